#include "model/gpt.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "build_info.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "kernels/ops/ops_cuda.h"
#include "model/head.h"
#include "model/precision.h"
#include "model/weight_copies.h"

namespace speedrun::model {

namespace {

// Indices of one block's parameters in the layout.
struct BlockParams {
  size_t norm1, norm2, q_w, q_b, k_w, k_b, v_w, v_b, proj_w, proj_b, fc_w, fc_b, mproj_w, mproj_b;
};

// The head's logits are produced and consumed in row chunks of at most this many bytes of
// f32, so that a (tokens x 50304) logit matrix never has to exist whole. On CUDA the chunks
// are larger: each is one GEMM, and ~2,700 rows keep it large enough to run near the
// device's peak (Track 3: 25 chunks per 64 x 1024 micro-batch instead of 197). The fused
// head (bf16 logits) keeps the same row count: 256 MiB instead of 768 MiB (f32 chunk and its
// bf16 twin); the whole bf16 (65,536 x 50,304) matrix would be 6.1 GiB, and a larger chunk
// would not make the ~2,700 x 50,304 x 768 products faster.
constexpr int64_t kHeadChunkBytesCpu = 64ll << 20;
constexpr int64_t kHeadChunkBytesCuda = 512ll << 20;

// Whether the bf16 layers add their biases in cuBLASLt's epilogue, which takes a bias of the
// output's type (kernels/ops/linear.cuh): then the model keeps bf16 copies of those biases.
// Read when the model is built (and by the memory plan: the same answer). The choice is read
// for every CUDA model, so that a bad SPEEDRUN_GEMM_EPILOGUE is refused before any run.
bool bf16_bias_copies(Device device, DType activations) {
  if (!SPEEDRUN_HAVE_CUDA || device != Device::cuda) return false;
  const bool fused = cuda::gemm_epilogue() == cuda::GemmEpilogue::fused;
  return fused && activations == DType::bf16;
}

// Which parameters get a bf16 copy: every matrix a linear layer reads (all 2-D weights
// but the embedding) with bf16 activations; the embedding table when it is read in bf16;
// with `biases` (bf16_bias_copies) the bias of every trunk layer, and the head's
// ("proj.bias") when the head writes bf16 logits (`bf16_logits`: the fused head), so that
// the epilogue adds it there too; the legacy head writes f32 logits, whose epilogue takes
// the f32 bias.
bool has_bf16_copy(const ParamSpec& spec, DType activations, DType embedding, bool biases, bool bf16_logits) {
  if (spec.name == "embed.weight") return embedding == DType::bf16;
  if (spec.shape.size() == 1 && spec.name.ends_with(".bias"))
    return biases && (spec.name != "proj.bias" || bf16_logits);
  return activations == DType::bf16 && spec.is_matrix();
}

// The shape of a parameter's bf16 copy: its own (a matrix or a vector).
Tensor take_copy(Arena& arena, const ParamSpec& spec) {
  if (spec.shape.size() == 1) return arena.take(DType::bf16, {spec.shape[0]});
  return arena.take(DType::bf16, {spec.shape[0], spec.shape[1]});
}

}  // namespace

// bf16 copies of f32 master weights (and biases: has_bf16_copy), in one allocation
// (64-byte aligned views, which cuBLASLt's fastest kernels want and its bias epilogue needs
// 16 of); copy[i] is empty for parameters without one.
struct Gpt::WeightCopies {
  Arena arena;
  std::vector<Tensor> copy;

  WeightCopies(Device d, const ParamLayout& layout, DType activations, DType embedding) : arena(d) {
    const bool biases = bf16_bias_copies(d, activations);
    const bool bf16_logits = Gpt::storage_choice(d, activations).fused_head;
    carve(layout, activations, embedding, biases, bf16_logits);
    if (arena.bytes() == 0) return;
    arena.allocate();
    carve(layout, activations, embedding, biases, bf16_logits);
  }
  void carve(const ParamLayout& layout, DType activations, DType embedding, bool biases, bool bf16_logits) {
    copy.assign(layout.params().size(), Tensor{});
    for (size_t i = 0; i < copy.size(); ++i) {
      const ParamSpec& spec = layout.params()[i];
      if (has_bf16_copy(spec, activations, embedding, biases, bf16_logits)) copy[i] = take_copy(arena, spec);
    }
  }
};

// Everything the backward needs, for up to max_batch_seqs sequences, plus scratch. Tensors
// of the activation dtype `act`, except what is f32 whatever it is (kernels/ops/ops_cuda.h: rstd, lse,
// losses, rotary tables) and the head's logit chunk (f32 for the loss, unless the head is
// fused: Gpt::Storage).
struct Gpt::Activations {
  struct Layer {
    Tensor rstd1, h1, q, k, v, q_rstd, k_rstd, qr, kr, y, lse, x_mid, rstd2, h2, f, g;  // g empty: relu2_recompute
  };
  std::vector<BlockParams> blocks;
  size_t embed, norm_in, norm_out, head_w, head_b;

  Tensor x0, rstd0;                  // embedding output and its norm's rstd
  std::vector<Tensor> resid;         // resid[l] = input of block l; resid[L] = final
  std::vector<Layer> layers;
  Tensor rstd_f, hf;                 // final norm
  Tensor losses;                     // (N) per-token losses
  Tensor logits;                     // (chunk_rows, V) head chunk: logits, then their gradient (f32; bf16 fused)
  Tensor dlogits_act;                // (chunk_rows, V) the gradient in bf16 for the head's products (bf16, not fused)
  Tensor rope_cos, rope_sin;         // (T, head_dim/2)
  Tensor tokens, targets;            // (N) i32 device copies of the host ids (CUDA only)
  // backward scratch
  Tensor dresid, dh, tmp_d, dfg, dy, dqr, dkr, dv, dq, dk, dhf;
  int64_t chunk_rows = 0;
  Gpt::Storage storage;
  Arena arena;

  explicit Activations(Device d) : arena(d) {}

  void carve(const config::ModelConfig& m, int64_t B, Device device, DType act, Gpt::Storage s) {
    const int64_t T = m.seq_len, N = B * T, d = m.d_model, hd = m.attn_dim(), H = m.n_head, f = m.mlp_hidden();
    const int64_t V = m.padded_vocab_size;
    const bool device_ids = device == Device::cuda;
    storage = s;
    // `take` for activations, `take32` for what stays f32. With act == f32 both are the
    // same and the carve (order, sizes) is what it always was.
    auto take = [this, act](std::initializer_list<int64_t> shape) { return arena.take(act, shape); };
    auto take32 = [this](std::initializer_list<int64_t> shape) { return arena.take(DType::f32, shape); };
    x0 = take({N, d});
    rstd0 = take32({N});
    resid.clear();
    for (int64_t l = 0; l <= m.n_layer; ++l) resid.push_back(take({N, d}));
    layers.assign(static_cast<size_t>(m.n_layer), Layer{});
    for (Layer& L : layers) {
      L.rstd1 = take32({N});
      L.h1 = take({N, d});
      L.q = take({N, hd});
      L.k = take({N, hd});
      L.v = take({N, hd});
      L.q_rstd = take32({N * H});
      L.k_rstd = take32({N * H});
      L.qr = take({N, hd});
      L.kr = take({N, hd});
      L.y = take({N, hd});
      L.lse = take32({B, H, T});
      L.x_mid = take({N, d});
      L.rstd2 = take32({N});
      L.h2 = take({N, d});
      L.f = take({N, f});
      if (!s.relu2_recompute) L.g = take({N, f});
    }
    rstd_f = take32({N});
    hf = take({N, d});
    losses = take32({N});
    chunk_rows = Gpt::head_chunk_rows(m, device, B);
    if (s.fused_head) {
      logits = take({chunk_rows, V});
    } else {
      logits = take32({chunk_rows, V});
      if (act != DType::f32) dlogits_act = take({chunk_rows, V});
    }
    rope_cos = take32({T, m.head_dim / 2});
    rope_sin = take32({T, m.head_dim / 2});
    dresid = take({N, d});
    dh = take({N, d});
    tmp_d = take({N, d});
    dfg = take({N, f});
    dy = take({N, hd});
    dqr = take({N, hd});
    dkr = take({N, hd});
    // dq, dk, dv in this order, one after another: the weight-gradient product of q, k and v
    // reads them as one strided batch (ops::linear_backward_qkv).
    dq = take({N, hd});
    dk = take({N, hd});
    dv = take({N, hd});
    dhf = take({N, d});
    if (device_ids) {
      tokens = arena.take(DType::i32, {N});
      targets = arena.take(DType::i32, {N});
    }
  }
};

Gpt::Gpt(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs, DType activations)
    : cfg_(cfg), layout_(track3_layout(cfg)), device_(device), max_batch_seqs_(max_batch_seqs), act_dtype_(activations) {
  if (cfg.arch != "track3")
    throw std::invalid_argument("model::Gpt implements model.arch track3, not '" + cfg.arch +
                                "' (make models through model/registry.h)");
  if (activations != DType::f32 && !(activations == DType::bf16 && device == Device::cuda))
    throw UserError(std::string("activation dtype ") + dtype_name(activations) + " on " + device_name(device) +
                    ": the model stores activations in f32, or in bf16 on CUDA");
  const DType embedding = resolve_embedding_dtype(cfg, device);
  softcap_ = softcap_of(cfg);

  params_ = Buffer(device, static_cast<size_t>(layout_.total_numel()) * sizeof(float));
  grads_ = Buffer(device, static_cast<size_t>(layout_.total_numel()) * sizeof(float));

  const Storage storage = storage_choice(device, activations);
  act_ = std::make_unique<Activations>(device);
  act_->carve(cfg_, max_batch_seqs_, device, act_dtype_, storage);
  act_->arena.allocate();
  act_->carve(cfg_, max_batch_seqs_, device, act_dtype_, storage);
  copies_ = std::make_unique<WeightCopies>(device, layout_, act_dtype_, embedding);
  stale_.assign(layout_.params().size(), 1);
  // Read here so that a bad SPEEDRUN_WEIGHT_COPIES or SPEEDRUN_CHECK_COPIES fails at
  // construction (on any device), not mid-run.
  lend_copies_ = weight_copy_writer() == WeightCopyWriter::optimizer && device == Device::cuda &&
                 copies_->arena.bytes() > 0;
  check_weight_copies();
  loss_total_ = Buffer(device, sizeof(double));
  if (device == Device::cuda)
    uploader_ = std::make_unique<HostUploader>(static_cast<size_t>(max_batch_seqs_ * cfg_.seq_len) * sizeof(int32_t));

  auto idx = [this](const std::string& n) { return layout_.index_of(n); };
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    act_->blocks.push_back({idx(b + "norm1.gains"), idx(b + "norm2.gains"), idx(b + "attn.q.weight"),
                            idx(b + "attn.q.bias"), idx(b + "attn.k.weight"), idx(b + "attn.k.bias"),
                            idx(b + "attn.v.weight"), idx(b + "attn.v.bias"), idx(b + "attn.proj.weight"),
                            idx(b + "attn.proj.bias"), idx(b + "mlp.fc.weight"), idx(b + "mlp.fc.bias"),
                            idx(b + "mlp.proj.weight"), idx(b + "mlp.proj.bias")});
  }
  act_->embed = idx("embed.weight");
  act_->norm_in = idx("norm1.gains");
  act_->norm_out = idx("norm2.gains");
  act_->head_w = idx("proj.weight");
  act_->head_b = idx("proj.bias");
  ops::rotary_tables(act_->rope_cos, act_->rope_sin, cfg_.head_dim, cfg_.rotary_base);
}

Gpt::~Gpt() = default;

size_t Gpt::activation_bytes() const { return act_->arena.bytes(); }
size_t Gpt::weight_copy_bytes() const { return copies_->arena.bytes(); }

size_t Gpt::plan_activation_bytes(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs,
                                  DType activations) {
  Activations plan(device);  // an Arena that is never allocated only counts
  plan.carve(cfg, max_batch_seqs, device, activations, storage_choice(device, activations));
  return plan.arena.bytes();
}

Gpt::Storage Gpt::storage_choice(Device device, DType activations) {
  Storage s;
  if (!SPEEDRUN_HAVE_CUDA || device != Device::cuda) return s;
  // Both choices are read whatever the dtype, so that a typo in either variable is refused
  // on every CUDA run (the head's choice applies to bf16 activations only).
  const bool fused = cuda::head_kernel() == cuda::HeadKernel::fused;
  s.fused_head = fused && activations == DType::bf16;
  s.relu2_recompute = cuda::relu2_storage() == cuda::Relu2Storage::recompute;
  // Stores nothing different (the trunk calls ops::residual_rmsnorm_forward and
  // ops::qk_norm_rotary_forward/backward either way, fused or not); read here so that a typo
  // in SPEEDRUN_FUSE_NORMS stops a run (and validate-config's plan).
  static_cast<void>(cuda::norm_fusion());
  return s;
}

int64_t Gpt::head_chunk_rows(const config::ModelConfig& cfg, Device device, int64_t batch_seqs) {
  const int64_t chunk_bytes = device == Device::cuda ? kHeadChunkBytesCuda : kHeadChunkBytesCpu;
  return std::clamp<int64_t>(chunk_bytes / (cfg.padded_vocab_size * 4), 1, batch_seqs * cfg.seq_len);
}

size_t Gpt::plan_weight_copy_bytes(const config::ModelConfig& cfg, Device device, DType activations) {
  const ParamLayout layout(cfg);
  const DType embedding = resolve_embedding_dtype(cfg, device);
  const bool biases = bf16_bias_copies(device, activations);
  const bool bf16_logits = storage_choice(device, activations).fused_head;
  Arena plan(device);
  for (const ParamSpec& spec : layout.params())
    if (has_bf16_copy(spec, activations, embedding, biases, bf16_logits)) take_copy(plan, spec);
  return plan.bytes();
}

Tensor Gpt::weight(size_t index) const {
  const Tensor& c = copies_->copy[index];
  return c.empty() ? view(params_, layout_.params()[index]) : c;
}

void Gpt::weights_changed() {
  std::fill(stale_.begin(), stale_.end(), 1);
  any_stale_ = true;
  verify_.clear();
}

Tensor Gpt::weight_copy(size_t index) {
  if (index >= copies_->copy.size()) throw std::out_of_range("Gpt::weight_copy: no parameter " + std::to_string(index));
  return lend_copies_ ? copies_->copy[index] : Tensor{};
}

void Gpt::weights_updated(const std::vector<size_t>& copies_written) {
  weights_changed();
  if (!lend_copies_) return;  // nobody was lent a copy: every one is converted
  for (size_t i : copies_written) {
    if (i >= stale_.size() || copies_->copy[i].empty())
      throw std::logic_error("Gpt::weights_updated: parameter " + std::to_string(i) + " has no weight copy");
    stale_[i] = 0;
    if (check_weight_copies()) verify_.push_back(i);
  }
}

void Gpt::verify_optimizer_copies() const {
  for (size_t i : verify_) {
    const Tensor& copy = copies_->copy[i];
    const Buffer fresh(device_, copy.bytes());
    Tensor expected = copy;  // the copy's own shape: a matrix, or a bias vector (fused epilogues)
    expected.ptr = fresh.data();
    ops::convert(expected, view(params_, layout_.params()[i]));
    std::vector<uint16_t> got(static_cast<size_t>(copy.numel())), want(got.size());
    device_copy(got.data(), copy.ptr, copy.bytes());
    device_copy(want.data(), fresh.data(), copy.bytes());
    for (size_t k = 0; k < got.size(); ++k)
      if (got[k] != want[k])
        throw std::logic_error("SPEEDRUN_CHECK_COPIES: the bf16 copy of " + layout_.params()[i].name +
                               " that the optimizer wrote differs from its master's conversion at element " +
                               std::to_string(k) + " of " + std::to_string(got.size()) + " (bits " +
                               std::to_string(got[k]) + ", expected " + std::to_string(want[k]) + ")");
  }
}

void Gpt::refresh_weight_copies() {
  if (!verify_.empty()) {
    verify_optimizer_copies();
    verify_.clear();
  }
  if (!any_stale_) return;
  for (size_t i = 0; i < copies_->copy.size(); ++i)
    if (!copies_->copy[i].empty() && stale_[i]) ops::convert(copies_->copy[i], param(i));
  std::fill(stale_.begin(), stale_.end(), 0);
  any_stale_ = false;
}

void Gpt::init_parameters(uint64_t seed) {
  if (device_ == Device::cuda) {
    // The same values as on the CPU: drawn on the host, then copied.
    std::vector<float> host(static_cast<size_t>(layout_.total_numel()), 0.0f);
    initialize_parameters(layout_, seed, host.data());
    if (!host.empty()) device_copy(params_.data(), host.data(), host.size() * sizeof(float));
    weights_changed();
    return;
  }
  params_.zero();
  initialize_parameters(layout_, seed, params());
  weights_changed();
}

// On CUDA the ids go through pinned staging with an asynchronous copy on the model's
// stream (HostUploader): a synchronous cudaMemcpy from pageable memory here was a host
// synchronization per micro-batch.
Tensor Gpt::ids_on_device(const int32_t* ids, int64_t n, const Tensor& device_buffer) {
  if (device_ == Device::cpu) return Tensor::of(ids, {n});
  const Tensor t = device_buffer.slice_rows(0, n);
  uploader_->upload(t.ptr, ids, static_cast<size_t>(n) * sizeof(int32_t));
  return t;
}

void Gpt::zero_grad() { grads_.zero(); }

// Views of the first n rows / elements of a full-size activation.
static Tensor rows(const Tensor& t, int64_t n) { return t.slice_rows(0, n); }

void Gpt::forward_trunk(const Tensor& tokens, int64_t B, LayerInputSink* sink) {
  Activations& a = *act_;
  const int64_t T = cfg_.seq_len, N = B * T, H = cfg_.n_head, D = cfg_.head_dim;
  const double eps = cfg_.rmsnorm_eps;
  auto heads = [&](const Tensor& t) { return rows(t, N).reshaped({B, T, H, D}); };

  refresh_weight_copies();
  ops::embedding_forward(rows(a.x0, N), tokens, weight(a.embed));
  ops::rmsnorm_forward(rows(a.resid[0], N), rows(a.rstd0, N), rows(a.x0, N), param(a.norm_in), eps);
  // Each residual add goes with the norm that reads its sum (ops::residual_rmsnorm_forward:
  // one kernel on CUDA with SPEEDRUN_FUSE_NORMS=1, else the two ops): x_mid with norm2, and
  // resid[l+1] with the next layer's norm1 (or the final norm). Layer 0's norm1 stands alone.
  ops::rmsnorm_forward(rows(a.layers[0].h1, N), rows(a.layers[0].rstd1, N), rows(a.resid[0], N),
                       param(a.blocks[0].norm1), eps);
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    Activations::Layer& L = a.layers[l];
    const BlockParams& p = a.blocks[l];
    const Tensor x = rows(a.resid[l], N);
    if (sink) sink->capture(l, CapturePoint::attn_qkv, rows(L.h1, N));
    // One product on CUDA with the fused epilogues (q, k, v and their weights and biases each
    // lie at one stride: the layout's order, the arenas' carve order), else three.
    ops::linear_forward_qkv({rows(L.q, N), rows(L.k, N), rows(L.v, N)}, rows(L.h1, N),
                            {weight(p.q_w), weight(p.k_w), weight(p.v_w)}, {bias(p.q_b), bias(p.k_b), bias(p.v_b)});
    // QK-norm then rotary: one kernel each on CUDA with SPEEDRUN_FUSE_NORMS=1, else the two ops.
    ops::qk_norm_rotary_forward(heads(L.qr), rows(L.q_rstd, N * H), heads(L.q), a.rope_cos, a.rope_sin, eps);
    ops::qk_norm_rotary_forward(heads(L.kr), rows(L.k_rstd, N * H), heads(L.k), a.rope_cos, a.rope_sin, eps);
    ops::attention_forward(heads(L.y), rows(L.lse, B), heads(L.qr), heads(L.kr), heads(L.v), cfg_.attn_scale);
    if (sink) sink->capture(l, CapturePoint::attn_proj, rows(L.y, N));
    ops::linear_forward(rows(a.tmp_d, N), rows(L.y, N), weight(p.proj_w), bias(p.proj_b));
    ops::residual_rmsnorm_forward(rows(L.x_mid, N), rows(L.h2, N), rows(L.rstd2, N), x, rows(a.tmp_d, N),
                                  param(p.norm2), eps);
    if (sink) sink->capture(l, CapturePoint::mlp_fc, rows(L.h2, N));
    ops::linear_forward(rows(L.f, N), rows(L.h2, N), weight(p.fc_w), bias(p.fc_b));
    // With relu2_recompute, g goes to the backward's dfg scratch (unused in the forward).
    const Tensor g = rows(a.storage.relu2_recompute ? a.dfg : L.g, N);
    ops::relu2_forward(g, rows(L.f, N));
    if (sink) sink->capture(l, CapturePoint::mlp_proj, g);
    ops::linear_forward(rows(a.tmp_d, N), g, weight(p.mproj_w), bias(p.mproj_b));
    const bool last = l + 1 == cfg_.n_layer;
    ops::residual_rmsnorm_forward(rows(a.resid[l + 1], N), rows(last ? a.hf : a.layers[l + 1].h1, N),
                                  rows(last ? a.rstd_f : a.layers[l + 1].rstd1, N), rows(L.x_mid, N),
                                  rows(a.tmp_d, N), param(last ? a.norm_out : a.blocks[l + 1].norm1), eps);
  }
}

double Gpt::head_loss(const Tensor& targets, int64_t B, bool backward) {
  head_losses(targets, B, backward);
  return ops::sum_losses(rows(act_->losses, B * cfg_.seq_len));
}

void Gpt::head_losses(const Tensor& targets, int64_t B, bool backward) {
  Activations& a = *act_;
  const int64_t N = B * cfg_.seq_len;
  model::head_losses({rows(a.hf, N), weight(a.head_w), bias(a.head_b), grad(a.head_w), grad(a.head_b), rows(a.dhf, N),
                      targets, a.logits, a.dlogits_act, rows(a.losses, N)},
                     softcap_, backward);
}

void Gpt::backward_trunk(const Tensor& tokens, int64_t B, GradReadySink* ready) {
  Activations& a = *act_;
  // Each parameter is reported right after the last op that adds to its gradient.
  const auto final = [ready](std::initializer_list<size_t> indices) {
    if (ready)
      for (size_t i : indices) ready->gradient_final(i);
  };
  const int64_t T = cfg_.seq_len, N = B * T, H = cfg_.n_head, D = cfg_.head_dim;
  auto heads = [&](const Tensor& t) { return rows(t, N).reshaped({B, T, H, D}); };
  const Tensor dresid = rows(a.dresid, N), dh = rows(a.dh, N);

  ops::rmsnorm_backward(dresid, grad(a.norm_out), rows(a.dhf, N), rows(a.resid[cfg_.n_layer], N), param(a.norm_out),
                        rows(a.rstd_f, N), false);
  final({a.norm_out});
  for (int64_t l = cfg_.n_layer - 1; l >= 0; --l) {
    Activations::Layer& L = a.layers[l];
    const BlockParams& p = a.blocks[l];
    // resid[l+1] = x_mid + mlp.proj(relu(mlp.fc(h2))^2)
    const Tensor dfg = rows(a.dfg, N);
    if (a.storage.relu2_recompute) {
      // dfg = dresid W first; then one pass rebuilds g over f (f is dead after this layer's
      // backward) and turns dfg into the pre-activation's gradient; then mlp.proj's weight
      // and bias gradients from the rebuilt g.
      const Tensor f = rows(L.f, N);
      ops::linear_backward(dfg, Tensor{}, Tensor{}, dresid, f, weight(p.mproj_w), false);
      ops::relu2_backward_recompute(dfg, f, dfg, f);
      ops::linear_backward(Tensor{}, grad(p.mproj_w), grad(p.mproj_b), dresid, f, weight(p.mproj_w), false);
      final({p.mproj_w, p.mproj_b});
    } else {
      ops::linear_backward(dfg, grad(p.mproj_w), grad(p.mproj_b), dresid, rows(L.g, N), weight(p.mproj_w), false);
      final({p.mproj_w, p.mproj_b});
      ops::relu2_backward(dfg, dfg, rows(L.f, N));
    }
    ops::linear_backward(dh, grad(p.fc_w), grad(p.fc_b), dfg, rows(L.h2, N), weight(p.fc_w), false);
    final({p.fc_w, p.fc_b});
    ops::rmsnorm_backward(dresid, grad(p.norm2), dh, rows(L.x_mid, N), param(p.norm2), rows(L.rstd2, N), true);
    final({p.norm2});
    // x_mid = resid[l] + attn.proj(attention(...))
    ops::linear_backward(rows(a.dy, N), grad(p.proj_w), grad(p.proj_b), dresid, rows(L.y, N), weight(p.proj_w),
                         false);
    final({p.proj_w, p.proj_b});
    ops::attention_backward(heads(a.dqr), heads(a.dkr), heads(a.dv), heads(a.dy), heads(L.qr), heads(L.kr),
                            heads(L.v), heads(L.y), rows(L.lse, B), cfg_.attn_scale);
    ops::qk_norm_rotary_backward(heads(a.dq), heads(a.dqr), heads(L.q), rows(L.q_rstd, N * H), a.rope_cos,
                                 a.rope_sin);
    ops::qk_norm_rotary_backward(heads(a.dk), heads(a.dkr), heads(L.k), rows(L.k_rstd, N * H), a.rope_cos,
                                 a.rope_sin);
    ops::linear_backward_qkv(dh, {grad(p.q_w), grad(p.k_w), grad(p.v_w)}, {grad(p.q_b), grad(p.k_b), grad(p.v_b)},
                             {rows(a.dq, N), rows(a.dk, N), rows(a.dv, N)}, rows(L.h1, N),
                             {weight(p.q_w), weight(p.k_w), weight(p.v_w)}, false);
    final({p.q_w, p.q_b, p.k_w, p.k_b, p.v_w, p.v_b});
    ops::rmsnorm_backward(dresid, grad(p.norm1), dh, rows(a.resid[l], N), param(p.norm1), rows(L.rstd1, N), true);
    final({p.norm1});
  }
  // resid[0] = rmsnorm(x0) * norm1.gains, x0 = embed[tokens]
  ops::rmsnorm_backward(rows(a.tmp_d, N), grad(a.norm_in), dresid, rows(a.x0, N), param(a.norm_in), rows(a.rstd0, N),
                        false);
  final({a.norm_in});
  ops::embedding_backward(grad(a.embed), tokens, rows(a.tmp_d, N));
  final({a.embed});
}

static void check_batch(int64_t B, int64_t max_b) {
  if (B < 1 || B > max_b)
    throw std::invalid_argument("micro-batch of " + std::to_string(B) + " sequences; the model was sized for 1.." +
                                std::to_string(max_b));
}

void Gpt::micro_batch(const int32_t* tokens, const int32_t* targets, int64_t B, LayerInputSink* sink,
                      GradReadySink* ready) {
  check_batch(B, max_batch_seqs_);
  const int64_t N = B * cfg_.seq_len;
  const Tensor tok = ids_on_device(tokens, N, act_->tokens), tgt = ids_on_device(targets, N, act_->targets);
  forward_trunk(tok, B, sink);
  head_losses(tgt, B, /*backward=*/true);
  if (ready) {
    ready->gradient_final(act_->head_w);
    ready->gradient_final(act_->head_b);
  }
  backward_trunk(tok, B, ready);
}

double Gpt::forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, LayerInputSink* sink,
                             RunPosition, GradReadySink* ready) {
  micro_batch(tokens, targets, B, sink, ready);
  // Reading the sum synchronizes on CUDA: training steps use forward_backward_summed.
  return ops::sum_losses(rows(act_->losses, B * cfg_.seq_len));
}

void Gpt::begin_loss_sum() { loss_total_empty_ = true; }

void Gpt::forward_backward_summed(const int32_t* tokens, const int32_t* targets, int64_t B, LayerInputSink* sink,
                                  RunPosition, GradReadySink* ready) {
  micro_batch(tokens, targets, B, sink, ready);
  ops::add_sum_of_losses(Tensor(loss_total_.data(), DType::f64, device_, {1}), rows(act_->losses, B * cfg_.seq_len),
                         /*overwrite=*/loss_total_empty_);
  loss_total_empty_ = false;
}

double Gpt::end_loss_sum() {
  if (loss_total_empty_) return 0.0;
  return ops::read_scalar_f64(Tensor(loss_total_.data(), DType::f64, device_, {1}));
}

double Gpt::forward_loss(const int32_t* tokens, const int32_t* targets, int64_t B, RunPosition) {
  check_batch(B, max_batch_seqs_);
  const int64_t N = B * cfg_.seq_len;
  forward_trunk(ids_on_device(tokens, N, act_->tokens), B, nullptr);
  return head_loss(ids_on_device(targets, N, act_->targets), B, /*backward=*/false);
}

void Gpt::forward_logits(const int32_t* tokens, int64_t B, float* out, RunPosition) {
  check_batch(B, max_batch_seqs_);
  const int64_t N = B * cfg_.seq_len, V = cfg_.padded_vocab_size;
  forward_trunk(ids_on_device(tokens, N, act_->tokens), B, nullptr);
  if (device_ == Device::cuda) {
    // Into a temporary device matrix, then to the host (tests and debugging only).
    const Buffer logits(Device::cuda, static_cast<size_t>(N * V) * sizeof(float));
    const Tensor z(logits.data(), DType::f32, Device::cuda, {N, V});
    ops::linear_forward(z, rows(act_->hf, N), weight(act_->head_w), param(act_->head_b));
    ops::softcap_forward(z, z, softcap_);
    device_copy(out, logits.data(), logits.bytes());
    return;
  }
  const Tensor z = Tensor::of(out, {N, V});
  ops::linear_forward(z, rows(act_->hf, N), param(act_->head_w), param(act_->head_b));
  ops::softcap_forward(z, z, softcap_);
}

}  // namespace speedrun::model
