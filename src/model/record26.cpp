#include "model/record26.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/device_memory.h"
#include "core/error.h"
#include "model/head.h"
#include "ops/cpu/attention.h"
#include "ops/ops.h"

namespace speedrun::model {

namespace {

// Bytes of f32 logits per head chunk (as model::Gpt: 64 MiB on the CPU, 256 MiB on CUDA).
constexpr int64_t kHeadChunkBytesCpu = 64ll << 20;
constexpr int64_t kHeadChunkBytesCuda = 256ll << 20;

// The parameters a linear layer reads: with bf16 activations on CUDA they get a bf16 copy
// (refreshed after every change), as model::Gpt's matrices do. The embedding tables are read
// in f32 by the lookups, the scalars on the host.
bool has_bf16_copy(const ParamSpec& spec, DType activations) {
  if (activations != DType::bf16) return false;
  return spec.name != "embed.weight" && spec.name != "scalars" && spec.name.rfind("value_embeds.", 0) != 0;
}

// Copies between host and device memory, or within the host.
void copy_bytes(Device device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (device == Device::cpu) std::memcpy(dst, src, bytes);
  else device_copy(dst, src, bytes);
}

std::string block(int64_t l) { return "blocks." + std::to_string(l) + "."; }

// Upstream's CastedLinear init: uniform with std 0.5 / sqrt(in_features).
double matrix_std(int64_t in_features) { return 0.5 / std::sqrt(static_cast<double>(in_features)); }

Tensor rows(const Tensor& t, int64_t n) { return t.slice_rows(0, n); }

// Matrix j (hd, d) of a (3, hd, d) qkv tensor.
Tensor qkv_part(const Tensor& qkv, int64_t j) { return qkv.slice_rows(j, j + 1).reshaped({qkv.dims[1], qkv.dims[2]}); }

}  // namespace

int64_t Record26::value_embed_of(const config::ModelConfig& m, int64_t layer) {
  if (layer < 3) return layer;
  if (layer >= m.n_layer - 3) return layer - (m.n_layer - 3);
  return -1;
}

int64_t Record26::scalars_size(const config::ModelConfig& m) { return (5 * m.n_layer + 7) / 8 * 8; }

int64_t Record26::long_window_blocks(const config::ModelConfig& m, RunPosition at) {
  if (at.steps <= 0 || at.step < 0 || at.step > at.steps)
    throw std::invalid_argument("record26: the attention window needs the run position (step " +
                                std::to_string(at.step) + " of " + std::to_string(at.steps) + ")");
  // Upstream: next_multiple_of_n(1728 * (step / steps), n=128), the smallest multiple of 128
  // that is >= 128 and >= the product, compared exactly (an integer against a double).
  const double v = static_cast<double>(m.window_tokens) * (static_cast<double>(at.step) / static_cast<double>(at.steps));
  const double bs = static_cast<double>(m.attn_block_size);
  int64_t blocks = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(v / bs)));
  while (static_cast<double>(blocks) * bs < v) ++blocks;
  while (blocks > 1 && static_cast<double>(blocks - 1) * bs >= v) --blocks;
  return blocks;
}

int64_t Record26::layer_window_blocks(const config::ModelConfig& m, int64_t layer, RunPosition at) {
  const int64_t w = long_window_blocks(m, at);
  return m.window_pattern.at(static_cast<size_t>(layer)) == 'L' ? w : std::max<int64_t>(1, w / 2);
}

double Record26::attention_keys_per_token(const config::ModelConfig& m, const int32_t* tokens, int64_t B,
                                          RunPosition at) {
  const int64_t T = m.seq_len, N = B * T;
  if (N <= 0) return 0.0;
  std::vector<int32_t> docs(static_cast<size_t>(N));
  for (int64_t b = 0; b < B; ++b) {
    int32_t doc = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (tokens[b * T + t] == m.doc_separator) ++doc;
      docs[static_cast<size_t>(b * T + t)] = doc;
    }
  }
  double keys = 0.0;
  std::vector<int64_t> start;
  for (int64_t l = 0; l < m.n_layer; ++l) {
    if (!has_attention(l)) continue;
    ops::cpu::attention_key_starts(start, docs.data(), B, T, m.attn_block_size, layer_window_blocks(m, l, at));
    for (int64_t i = 0; i < N; ++i) keys += static_cast<double>(i % T - start[static_cast<size_t>(i)] + 1);
  }
  return keys / static_cast<double>(N);
}

ParamLayout record26_layout(const config::ModelConfig& m) {
  const int64_t d = m.d_model, hd = m.attn_dim(), f = m.mlp_hidden(), v = m.padded_vocab_size, L = m.n_layer;
  ParamLayout layout;
  layout.add("embed.weight", {v, d}, Init::normal);
  for (int j = 0; j < 3; ++j) layout.add("value_embeds." + std::to_string(j) + ".weight", {v, d}, Init::normal);
  for (int64_t l = 0; l < L; ++l) {
    if (Record26::has_attention(l)) {
      layout.add(block(l) + "attn.qkv_w", {3, hd, d}, Init::uniform_std, d).std = matrix_std(d);
      layout.add(block(l) + "attn.c_proj.weight", {d, hd}, Init::zeros, hd);
    }
    layout.add(block(l) + "mlp.c_fc.weight", {f, d}, Init::uniform_std, d).std = matrix_std(d);
    layout.add(block(l) + "mlp.c_proj.weight", {d, f}, Init::zeros, f);
  }
  layout.add("lm_head.weight", {v, d}, Init::zeros, d);
  const int64_t n = Record26::scalars_size(m);
  std::vector<float> init(static_cast<size_t>(n), 1.0f);  // skip weights and the padding: 1
  for (int64_t l = 0; l < L; ++l) {
    init[static_cast<size_t>(Record26::block_lambda_index(m, l))] = 1.0f;      // a
    init[static_cast<size_t>(Record26::block_lambda_index(m, l) + 1)] = 0.0f;  // b
    init[static_cast<size_t>(Record26::attn_lambda_index(m, l))] = 0.5f;       // l0
    init[static_cast<size_t>(Record26::attn_lambda_index(m, l) + 1)] = 0.5f;   // l1
  }
  layout.add("scalars", {n}, Init::values).values = std::move(init);
  return layout;
}

// bf16 copies of f32 master weights (has_bf16_copy), in one allocation; empty entries for
// the parameters read as they are.
struct Record26::WeightCopies {
  Arena arena;
  std::vector<Tensor> copy;
  WeightCopies(Device device, const ParamLayout& layout, DType activations) : arena(device) {
    for (int pass = 0; pass < 2; ++pass) {
      copy.assign(layout.params().size(), Tensor{});
      for (size_t i = 0; i < layout.params().size(); ++i) {
        const ParamSpec& spec = layout.params()[i];
        if (!has_bf16_copy(spec, activations)) continue;
        Tensor t = arena.take(DType::bf16, {spec.numel});
        t.ndim = static_cast<int>(spec.shape.size());
        for (size_t j = 0; j < spec.shape.size(); ++j) t.dims[j] = spec.shape[j];
        copy[i] = t;
      }
      if (pass == 0) arena.allocate();
    }
  }
};

// Everything the backward needs for up to max_batch_seqs rows, plus scratch. Activations in
// the activation dtype (f32, or bf16 on CUDA); rstd, lse, losses, logits and the rotary
// tables f32 (kernels/ops/ops_cuda.h); on CUDA the token, target and document ids as i32.
struct Record26::Activations {
  struct Layer {
    Tensor xs;     // the block's input after the skip add (for l < L/2 a view of the previous output)
    Tensor xl;     // a xs + b x0
    Tensor rstd1, h1, q, k, v_raw, v, q_rstd, k_rstd, qr, kr, y, lse;  // attention (empty in layer 7)
    Tensor x_mid;  // xl + attention (xl itself without attention)
    Tensor rstd2, h2, f, g, out;
  };
  struct BlockIndex {
    size_t qkv = 0, attn_proj = 0, fc = 0, mlp_proj = 0;
  };
  std::vector<BlockIndex> blocks;
  size_t embed = 0, head = 0, ve[3] = {0, 0, 0};

  Tensor x0e, rstd0, x0;  // embedding rows, rmsnorm's rstd, x0
  Tensor ve_rows[3];      // value_embeds.j[tokens]
  std::vector<Layer> layers;
  Tensor rstd_f, hf, losses, logits, dlogits_act, rope_cos, rope_sin;
  // model.fp8_head: the e4m3-rounded hf and lm_head (CPU: f32 holding FP8 values; CUDA: e4m3,
  // with the transposed and gradient copies of one head chunk, model/head.h).
  Fp8HeadTensors fp8;
  Tensor dx, dh, tmp_d, dfg, dy, dqr, dkr, dv, dq, dk, tmp_hd, dx0, dhf;
  Tensor tokens, targets, docs_dev;  // (N) i32 device copies (CUDA only)
  std::vector<Tensor> dskip;  // gradient reaching layer l's output through its skip (l < L/2)
  std::vector<int32_t> docs;  // (B, T) document numbers of the current micro-batch (host)
  std::vector<float> scalars, scalar_grads;  // host copies of the scalars and their gradient
  int64_t chunk_rows = 0;
  Arena arena;

  explicit Activations(Device d) : arena(d) {}

  void carve(const config::ModelConfig& m, int64_t B, Device device, DType act) {
    const int64_t T = m.seq_len, N = B * T, d = m.d_model, hd = m.attn_dim(), H = m.n_head, f = m.mlp_hidden();
    const int64_t V = m.padded_vocab_size, L = m.n_layer, n = L / 2;
    // `take` for activations, `take32` for what stays f32 (the same with f32 activations).
    auto take = [this, act](std::initializer_list<int64_t> shape) { return arena.take(act, shape); };
    auto take32 = [this](std::initializer_list<int64_t> shape) { return arena.take(DType::f32, shape); };
    x0e = take({N, d});
    rstd0 = take32({N});
    x0 = take({N, d});
    for (Tensor& t : ve_rows) t = take({N, d});
    layers.assign(static_cast<size_t>(L), Layer{});
    for (int64_t l = 0; l < L; ++l) {
      Layer& Y = layers[static_cast<size_t>(l)];
      if (l >= n) Y.xs = take({N, d});
      Y.xl = take({N, d});
      if (has_attention(l)) {
        Y.rstd1 = take32({N});
        Y.h1 = take({N, d});
        Y.q = take({N, hd});
        Y.k = take({N, hd});
        Y.v_raw = take({N, hd});
        Y.v = take({N, hd});
        Y.q_rstd = take32({N * H});
        Y.k_rstd = take32({N * H});
        Y.qr = take({N, hd});
        Y.kr = take({N, hd});
        Y.y = take({N, hd});
        Y.lse = take32({B, H, T});
        Y.x_mid = take({N, d});
      }
      Y.rstd2 = take32({N});
      Y.h2 = take({N, d});
      Y.f = take({N, f});
      Y.g = take({N, f});
      Y.out = take({N, d});
    }
    rstd_f = take32({N});
    hf = take({N, d});
    losses = take32({N});
    const int64_t chunk_bytes = device == Device::cuda ? kHeadChunkBytesCuda : kHeadChunkBytesCpu;
    chunk_rows = std::clamp<int64_t>(chunk_bytes / (V * 4), 1, N);
    const bool fp8_cuda = m.fp8_head && device == Device::cuda;
    // cuBLASLt's FP8 products take row counts that are multiples of 16 (kernels/ops/fp8_head.cu):
    // every chunk but the last has chunk_rows rows, and the last N mod chunk_rows, so both are
    // when N is (check_model_runs_on asks seq_len to be).
    if (fp8_cuda) chunk_rows = std::min(N, std::max<int64_t>(16, chunk_rows / 16 * 16));
    logits = take32({chunk_rows, V});
    if (act != DType::f32) dlogits_act = take({chunk_rows, V});
    if (fp8_cuda) {
      // One byte per element: xq and wq for the backward, the transposed copies the FP8
      // products read (both operands K-major on Hopper) and the e5m2 gradient of one chunk.
      fp8.xq = arena.take(DType::e4m3, {N, d});
      fp8.wq = arena.take(DType::e4m3, {V, d});
      fp8.cuda = {arena.take(DType::e4m3, {d, chunk_rows}), arena.take(DType::e4m3, {d, V}),
                  arena.take(DType::e5m2, {chunk_rows, V}), arena.take(DType::e5m2, {V, chunk_rows})};
      fp8.scales = fp8_head_scales(m);
    } else if (m.fp8_head) {
      fp8.xq = take32({N, d});
      fp8.wq = take32({V, d});
      fp8.scales = fp8_head_scales(m);
    }
    rope_cos = take32({T, m.head_dim / 2});
    rope_sin = take32({T, m.head_dim / 2});
    for (Tensor* t : {&dx, &dh, &tmp_d, &dx0, &dhf}) *t = take({N, d});
    dfg = take({N, f});
    for (Tensor* t : {&dy, &dqr, &dkr, &dv, &dq, &dk, &tmp_hd}) *t = take({N, hd});
    dskip.clear();
    for (int64_t l = 0; l < n; ++l) dskip.push_back(take({N, d}));
    if (device == Device::cuda) {
      tokens = arena.take(DType::i32, {N});
      targets = arena.take(DType::i32, {N});
      docs_dev = arena.take(DType::i32, {N});
    }
    // Views that alias: layer l < L/2 reads the previous output (x0 for layer 0) as is, and a
    // layer without attention passes xl on unchanged.
    for (int64_t l = 0; l < L; ++l) {
      Layer& Y = layers[static_cast<size_t>(l)];
      if (l < n) Y.xs = l == 0 ? x0 : layers[static_cast<size_t>(l - 1)].out;
      if (!has_attention(l)) Y.x_mid = Y.xl;
    }
  }
};

Record26::Record26(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs, DType activations)
    : cfg_(cfg),
      layout_(record26_layout(cfg)),
      device_(device),
      act_dtype_(activations),
      max_batch_seqs_(max_batch_seqs),
      softcap_(softcap_of(cfg)) {
  if (activations != DType::f32 && !(activations == DType::bf16 && device == Device::cuda))
    throw UserError(std::string("model.arch = record26: activation dtype ") + dtype_name(activations) + " on " +
                    device_name(device) + ": the model stores activations in f32, or in bf16 on CUDA");
  if (cfg.n_layer < 6 || cfg.n_layer % 2 != 0 || static_cast<int64_t>(cfg.window_pattern.size()) != cfg.n_layer)
    throw std::invalid_argument("record26: n_layer must be even and >= 6 with one window_pattern letter per layer "
                                "(config validation says so first)");
  params_ = Buffer(device, static_cast<size_t>(layout_.total_numel()) * sizeof(float));
  grads_ = Buffer(device, static_cast<size_t>(layout_.total_numel()) * sizeof(float));
  act_ = std::make_unique<Activations>(device);
  act_->carve(cfg_, max_batch_seqs_, device_, act_dtype_);
  act_->arena.allocate();
  act_->carve(cfg_, max_batch_seqs_, device_, act_dtype_);
  copies_ = std::make_unique<WeightCopies>(device, layout_, act_dtype_);
  Activations& a = *act_;
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    Activations::BlockIndex bi;
    if (has_attention(l)) {
      bi.qkv = layout_.index_of(block(l) + "attn.qkv_w");
      bi.attn_proj = layout_.index_of(block(l) + "attn.c_proj.weight");
    }
    bi.fc = layout_.index_of(block(l) + "mlp.c_fc.weight");
    bi.mlp_proj = layout_.index_of(block(l) + "mlp.c_proj.weight");
    a.blocks.push_back(bi);
  }
  a.embed = layout_.index_of("embed.weight");
  for (int j = 0; j < 3; ++j) a.ve[j] = layout_.index_of("value_embeds." + std::to_string(j) + ".weight");
  a.head = layout_.index_of("lm_head.weight");
  scalars_ = layout_.index_of("scalars");
  a.scalars.assign(static_cast<size_t>(scalars_size(cfg_)), 0.0f);
  a.scalar_grads.assign(a.scalars.size(), 0.0f);
  ops::rotary_tables(a.rope_cos, a.rope_sin, cfg_.head_dim, cfg_.rotary_base);
  zero_grad();
}

Record26::~Record26() = default;

size_t Record26::activation_bytes() const { return act_->arena.bytes(); }
size_t Record26::weight_copy_bytes() const { return copies_->arena.bytes(); }

size_t Record26::plan_activation_bytes(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs,
                                       DType activations) {
  Activations plan(device);  // an Arena that is never allocated only counts
  plan.carve(cfg, max_batch_seqs, device, activations);
  return plan.arena.bytes();
}

size_t Record26::plan_weight_copy_bytes(const config::ModelConfig& cfg, Device device, DType activations) {
  const ParamLayout layout = record26_layout(cfg);
  Arena plan(device);
  for (const ParamSpec& spec : layout.params())
    if (has_bf16_copy(spec, activations)) plan.take(DType::bf16, {spec.numel});
  return plan.bytes();
}

void Record26::init_parameters(uint64_t seed) {
  if (device_ == Device::cuda) {
    // The same values as on the CPU: drawn on the host, then copied.
    std::vector<float> host(static_cast<size_t>(layout_.total_numel()), 0.0f);
    initialize_parameters(layout_, seed, host.data());
    if (!host.empty()) device_copy(params_.data(), host.data(), host.size() * sizeof(float));
  } else {
    params_.zero();
    initialize_parameters(layout_, seed, params());
  }
  weights_changed();
}

Tensor Record26::weight(size_t index) {
  const Tensor& c = copies_->copy[index];
  return c.empty() ? param(index) : c;
}

void Record26::refresh_weight_copies() {
  if (!copies_stale_) return;
  for (size_t i = 0; i < copies_->copy.size(); ++i)
    if (!copies_->copy[i].empty()) ops::convert(copies_->copy[i], param(i));
  copies_stale_ = false;
}

// The ids as a tensor on the model's device: the host array itself on the CPU, a copy into
// the activation arena on CUDA (a synchronous cudaMemcpy from pageable memory).
Tensor Record26::ids_on(const int32_t* ids, int64_t n, const Tensor& device_buffer) const {
  if (device_ == Device::cpu) return Tensor::of(ids, {n});
  const Tensor t = device_buffer.slice_rows(0, n);
  device_copy(t.ptr, ids, static_cast<size_t>(n) * sizeof(int32_t));
  return t;
}

void Record26::load_scalars() {
  Activations& a = *act_;
  copy_bytes(device_, a.scalars.data(), param(scalars_).ptr, a.scalars.size() * sizeof(float));
}

void Record26::load_scalar_grads() {
  Activations& a = *act_;
  copy_bytes(device_, a.scalar_grads.data(), grad(scalars_).ptr, a.scalar_grads.size() * sizeof(float));
}

void Record26::store_scalar_grads() {
  Activations& a = *act_;
  copy_bytes(device_, grad(scalars_).ptr, a.scalar_grads.data(), a.scalar_grads.size() * sizeof(float));
}

float Record26::scalar(int64_t index) const { return act_->scalars[static_cast<size_t>(index)]; }

void Record26::add_scalar_grad(int64_t index, double g) {
  act_->scalar_grads[static_cast<size_t>(index)] += static_cast<float>(g);
}

void Record26::zero_grad() { grads_.zero(); }

void Record26::forward_trunk(const int32_t* tokens, int64_t B, RunPosition at, LayerInputSink* sink) {
  Activations& a = *act_;
  const int64_t T = cfg_.seq_len, N = B * T, H = cfg_.n_head, D = cfg_.head_dim, L = cfg_.n_layer, n = L / 2;
  const double eps = cfg_.rmsnorm_eps;
  auto heads = [&](const Tensor& t) { return rows(t, N).reshaped({B, T, H, D}); };
  const Tensor tok = ids_on(tokens, N, a.tokens);
  refresh_weight_copies();
  load_scalars();  // on CUDA one 4 * scalars_size-byte copy to the host per forward

  // Document numbers: the running count of separators in each row (a separator opens its
  // document), computed on the host from the host tokens; on CUDA uploaded once per forward.
  a.docs.assign(static_cast<size_t>(N), 0);
  for (int64_t b = 0; b < B; ++b) {
    int32_t doc = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (tokens[b * T + t] == cfg_.doc_separator) ++doc;
      a.docs[static_cast<size_t>(b * T + t)] = doc;
    }
  }
  const Tensor docs = ids_on(a.docs.data(), N, a.docs_dev).reshaped({B, T});

  ops::embedding_forward(rows(a.x0e, N), tok, param(a.embed));
  ops::rmsnorm_forward(rows(a.x0, N), rows(a.rstd0, N), rows(a.x0e, N), Tensor{}, eps);
  for (int j = 0; j < 3; ++j) ops::embedding_forward(rows(a.ve_rows[j], N), tok, param(a.ve[j]));

  for (int64_t l = 0; l < L; ++l) {
    Activations::Layer& Y = a.layers[static_cast<size_t>(l)];
    const Activations::BlockIndex& p = a.blocks[static_cast<size_t>(l)];
    if (l >= n) {
      const Tensor& prev = a.layers[static_cast<size_t>(l - 1)].out;
      const Tensor& skip = a.layers[static_cast<size_t>(2 * n - 1 - l)].out;
      ops::scaled_sum(rows(Y.xs, N), 1.0, rows(prev, N), scalar(skip_weight_index(cfg_, l - n)), rows(skip, N));
    }
    const int64_t lam = block_lambda_index(cfg_, l);
    ops::scaled_sum(rows(Y.xl, N), scalar(lam), rows(Y.xs, N), scalar(lam + 1), rows(a.x0, N));
    if (has_attention(l)) {
      const Tensor qkv = weight(p.qkv);
      ops::rmsnorm_forward(rows(Y.h1, N), rows(Y.rstd1, N), rows(Y.xl, N), Tensor{}, eps);
      if (sink) sink->capture(l, CapturePoint::attn_qkv, rows(Y.h1, N));
      ops::linear_forward(rows(Y.q, N), rows(Y.h1, N), qkv_part(qkv, 0), Tensor{});
      ops::linear_forward(rows(Y.k, N), rows(Y.h1, N), qkv_part(qkv, 1), Tensor{});
      ops::linear_forward(rows(Y.v_raw, N), rows(Y.h1, N), qkv_part(qkv, 2), Tensor{});
      ops::qk_norm_forward(rows(Y.qr, N), rows(Y.q_rstd, N * H), rows(Y.q, N), D, eps);
      ops::qk_norm_forward(rows(Y.kr, N), rows(Y.k_rstd, N * H), rows(Y.k, N), D, eps);
      ops::rotary_forward(heads(Y.qr), heads(Y.qr), a.rope_cos, a.rope_sin);
      ops::rotary_forward(heads(Y.kr), heads(Y.kr), a.rope_cos, a.rope_sin);
      const int64_t sa = attn_lambda_index(cfg_, l), ve = value_embed_of(cfg_, l);
      if (ve >= 0) ops::scaled_sum(rows(Y.v, N), scalar(sa), rows(Y.v_raw, N), scalar(sa + 1), rows(a.ve_rows[ve], N));
      else ops::scaled_sum(rows(Y.v, N), scalar(sa), rows(Y.v_raw, N), 0.0, Tensor{});
      const ops::AttentionMask mask{docs, cfg_.attn_block_size, layer_window_blocks(cfg_, l, at)};
      ops::attention_forward(heads(Y.y), rows(Y.lse, B), heads(Y.qr), heads(Y.kr), heads(Y.v), cfg_.attn_scale, mask);
      if (sink) sink->capture(l, CapturePoint::attn_proj, rows(Y.y, N));
      ops::linear_forward(rows(a.tmp_d, N), rows(Y.y, N), weight(p.attn_proj), Tensor{});
      ops::residual_forward(rows(Y.x_mid, N), rows(Y.xl, N), rows(a.tmp_d, N));
    }
    ops::rmsnorm_forward(rows(Y.h2, N), rows(Y.rstd2, N), rows(Y.x_mid, N), Tensor{}, eps);
    if (sink) sink->capture(l, CapturePoint::mlp_fc, rows(Y.h2, N));
    ops::linear_forward(rows(Y.f, N), rows(Y.h2, N), weight(p.fc), Tensor{});
    ops::relu2_forward(rows(Y.g, N), rows(Y.f, N));
    if (sink) sink->capture(l, CapturePoint::mlp_proj, rows(Y.g, N));
    ops::linear_forward(rows(a.tmp_d, N), rows(Y.g, N), weight(p.mlp_proj), Tensor{});
    ops::residual_forward(rows(Y.out, N), rows(Y.x_mid, N), rows(a.tmp_d, N));
  }
  ops::rmsnorm_forward(rows(a.hf, N), rows(a.rstd_f, N), rows(a.layers.back().out, N), Tensor{}, eps);
}

double Record26::head_loss(const int32_t* targets, int64_t B, bool backward) {
  Activations& a = *act_;
  const int64_t N = B * cfg_.seq_len;
  // model.fp8_head: the training product in FP8 as upstream's CastedLinear(use_fp8=True), whose
  // `self.training` branch alone takes nanogpt::mm; evaluation (no backward) keeps the plain head.
  // The FP8 product quantizes the f32 master (upstream's lm_head weight is f32), not the bf16
  // copy the plain head reads with bf16 activations: e4m3(bf16(w) / w_s) could round twice.
  const bool fp8 = cfg_.fp8_head && backward;
  return model::head_loss({rows(a.hf, N), fp8 ? param(a.head) : weight(a.head), Tensor{}, grad(a.head), Tensor{},
                           rows(a.dhf, N),
                           ids_on(targets, N, a.targets), a.logits, a.dlogits_act, rows(a.losses, N)},
                          softcap_, backward, fp8 ? &a.fp8 : nullptr);
}

void Record26::backward_trunk(const int32_t* tokens, int64_t B, RunPosition at, GradReadySink* ready) {
  Activations& a = *act_;
  const auto final = [ready](size_t index) {
    if (ready) ready->gradient_final(index);
  };
  const int64_t T = cfg_.seq_len, N = B * T, H = cfg_.n_head, D = cfg_.head_dim, L = cfg_.n_layer, n = L / 2;
  auto heads = [&](const Tensor& t) { return rows(t, N).reshaped({B, T, H, D}); };
  // The forward's ids: the host arrays on the CPU, their device copies (made by the forward) on CUDA.
  const Tensor tok = device_ == Device::cpu ? Tensor::of(tokens, {N}) : rows(a.tokens, N);
  const Tensor docs = (device_ == Device::cpu ? Tensor::of(a.docs.data(), {N}) : rows(a.docs_dev, N)).reshaped({B, T});
  const Tensor dx = rows(a.dx, N), dh = rows(a.dh, N), dx0 = rows(a.dx0, N);
  // The scalars' gradients are summed on the host (each dot product returns there): read the
  // accumulated ones now, write them back at the end (on CUDA two small copies per backward).
  load_scalar_grads();

  // dx: the gradient at the current point of the residual stream, walking back.
  ops::rmsnorm_backward(dx, Tensor{}, rows(a.dhf, N), rows(a.layers.back().out, N), Tensor{}, rows(a.rstd_f, N),
                        false);
  ops::scaled_sum(dx0, 0.0, dx, 0.0, Tensor{});  // gradient reaching x0 through the b_i x0 terms
  for (int64_t l = L - 1; l >= 0; --l) {
    Activations::Layer& Y = a.layers[static_cast<size_t>(l)];
    const Activations::BlockIndex& p = a.blocks[static_cast<size_t>(l)];
    // The output of a layer l < L/2 also feeds layer L-1-l's skip, already walked back.
    if (l < n) ops::residual_backward(dx, Tensor{}, rows(a.dskip[static_cast<size_t>(l)], N));
    // out = x_mid + c_proj(relu(c_fc(rmsnorm(x_mid)))^2)
    const Tensor dfg = rows(a.dfg, N);
    ops::linear_backward(dfg, grad(p.mlp_proj), Tensor{}, dx, rows(Y.g, N), weight(p.mlp_proj), false);
    ops::relu2_backward(dfg, dfg, rows(Y.f, N));
    ops::linear_backward(dh, grad(p.fc), Tensor{}, dfg, rows(Y.h2, N), weight(p.fc), false);
    final(p.mlp_proj);
    final(p.fc);
    ops::rmsnorm_backward(dx, Tensor{}, dh, rows(Y.x_mid, N), Tensor{}, rows(Y.rstd2, N), true);
    if (has_attention(l)) {
      // x_mid = xl + c_proj(attention(rotary(qknorm(q)), rotary(qknorm(k)), l0 v_raw + l1 ve))
      const Tensor qkv = weight(p.qkv), dqkv = grad(p.qkv);
      const Tensor dv = rows(a.dv, N);
      ops::linear_backward(rows(a.dy, N), grad(p.attn_proj), Tensor{}, dx, rows(Y.y, N), weight(p.attn_proj), false);
      const ops::AttentionMask mask{docs, cfg_.attn_block_size, layer_window_blocks(cfg_, l, at)};
      ops::attention_backward(heads(a.dqr), heads(a.dkr), heads(a.dv), heads(a.dy), heads(Y.qr), heads(Y.kr),
                              heads(Y.v), heads(Y.y), rows(Y.lse, B), cfg_.attn_scale, mask);
      const int64_t sa = attn_lambda_index(cfg_, l), ve = value_embed_of(cfg_, l);
      const float l0 = scalar(sa), l1 = scalar(sa + 1);
      add_scalar_grad(sa, ops::dot(dv, rows(Y.v_raw, N)));
      if (ve >= 0) {
        add_scalar_grad(sa + 1, ops::dot(dv, rows(a.ve_rows[ve], N)));
        ops::scaled_sum(rows(a.tmp_hd, N), l1, dv, 0.0, Tensor{});
        ops::embedding_backward(grad(a.ve[ve]), tok, rows(a.tmp_hd, N));
      }
      ops::scaled_sum(dv, l0, dv, 0.0, Tensor{});  // now d v_raw
      ops::rotary_backward(heads(a.dqr), heads(a.dqr), a.rope_cos, a.rope_sin);
      ops::rotary_backward(heads(a.dkr), heads(a.dkr), a.rope_cos, a.rope_sin);
      ops::qk_norm_backward(rows(a.dq, N), rows(a.dqr, N), rows(Y.q, N), rows(Y.q_rstd, N * H), D);
      ops::qk_norm_backward(rows(a.dk, N), rows(a.dkr, N), rows(Y.k, N), rows(Y.k_rstd, N * H), D);
      ops::linear_backward(dh, qkv_part(dqkv, 0), Tensor{}, rows(a.dq, N), rows(Y.h1, N), qkv_part(qkv, 0), false);
      ops::linear_backward(dh, qkv_part(dqkv, 1), Tensor{}, rows(a.dk, N), rows(Y.h1, N), qkv_part(qkv, 1), true);
      ops::linear_backward(dh, qkv_part(dqkv, 2), Tensor{}, dv, rows(Y.h1, N), qkv_part(qkv, 2), true);
      final(p.attn_proj);
      final(p.qkv);
      // Value-embedding table j feeds layers j and L-3+j (value_embed_of); walking back, layer
      // j < 3 is its last contributor (j < 3 < 7: it always has attention).
      if (ve >= 0 && l == ve) final(a.ve[ve]);
      ops::rmsnorm_backward(dx, Tensor{}, dh, rows(Y.xl, N), Tensor{}, rows(Y.rstd1, N), true);
    }
    // xl = a xs + b x0
    const int64_t lam = block_lambda_index(cfg_, l);
    const float sa_a = scalar(lam), sa_b = scalar(lam + 1);
    add_scalar_grad(lam, ops::dot(dx, rows(Y.xs, N)));
    add_scalar_grad(lam + 1, ops::dot(dx, rows(a.x0, N)));
    ops::scaled_sum(dx0, 1.0, dx0, sa_b, dx);
    ops::scaled_sum(dx, sa_a, dx, 0.0, Tensor{});  // now d xs
    if (l >= n) {
      // xs = out[l-1] + skip_w[l-n] out[2n-1-l]: dx flows on to out[l-1] as it is.
      const int64_t j = 2 * n - 1 - l, w = skip_weight_index(cfg_, l - n);
      add_scalar_grad(w, ops::dot(dx, rows(a.layers[static_cast<size_t>(j)].out, N)));
      ops::scaled_sum(rows(a.dskip[static_cast<size_t>(j)], N), scalar(w), dx, 0.0, Tensor{});
    }
  }
  // Every layer down to 0 adds to the scalars (its a, b and, with attention, l0, l1); their
  // gradients were summed in the host copy: written back before the report.
  store_scalar_grads();
  final(scalars_);
  // Layer 0's xs is x0 itself.
  ops::residual_backward(dx, Tensor{}, dx0);
  ops::rmsnorm_backward(rows(a.tmp_d, N), Tensor{}, dx, rows(a.x0e, N), Tensor{}, rows(a.rstd0, N), false);
  ops::embedding_backward(grad(a.embed), tok, rows(a.tmp_d, N));
  final(a.embed);
}

static void check_batch(int64_t B, int64_t max_b) {
  if (B < 1 || B > max_b)
    throw std::invalid_argument("micro-batch of " + std::to_string(B) + " sequences; the model was sized for 1.." +
                                std::to_string(max_b));
}

double Record26::forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, LayerInputSink* sink,
                                  RunPosition at, GradReadySink* ready) {
  check_batch(B, max_batch_seqs_);
  forward_trunk(tokens, B, at, sink);
  const double loss = head_loss(targets, B, /*backward=*/true);
  if (ready) ready->gradient_final(act_->head);
  backward_trunk(tokens, B, at, ready);
  return loss;
}

double Record26::forward_loss(const int32_t* tokens, const int32_t* targets, int64_t B, RunPosition at) {
  check_batch(B, max_batch_seqs_);
  forward_trunk(tokens, B, at, nullptr);
  return head_loss(targets, B, /*backward=*/false);
}

void Record26::forward_logits(const int32_t* tokens, int64_t B, float* out, RunPosition at) {
  check_batch(B, max_batch_seqs_);
  const int64_t N = B * cfg_.seq_len;
  forward_trunk(tokens, B, at, nullptr);
  const int64_t V = cfg_.padded_vocab_size;
  if (device_ == Device::cuda) {
    // Into a temporary device matrix, then to the host (tests and debugging only).
    const Buffer logits(Device::cuda, static_cast<size_t>(N * V) * sizeof(float));
    const Tensor z(logits.data(), DType::f32, Device::cuda, {N, V});
    ops::linear_forward(z, rows(act_->hf, N), weight(act_->head), Tensor{});
    ops::softcap_forward(z, z, softcap_);
    device_copy(out, logits.data(), logits.bytes());
    return;
  }
  const Tensor z = Tensor::of(out, {N, V});
  ops::linear_forward(z, rows(act_->hf, N), param(act_->head), Tensor{});
  ops::softcap_forward(z, z, softcap_);
}

}  // namespace speedrun::model
