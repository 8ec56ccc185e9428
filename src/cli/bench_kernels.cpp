#include "cli/bench_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "build_info.h"
#include "cli/gemm_ceiling.h"
#include "model/kernel_table.h"
#include "core/buffer.h"
#include "core/cuda_info.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "core/files.h"
#include "core/format_bytes.h"
#include "model/gpt.h"
#include "model/head.h"
#include "model/precision.h"
#include "ops/ops.h"
#include "train/memory_plan.h"
#if SPEEDRUN_HAVE_CUDA
#include "kernels/ops/ops_cuda.h"
#include "kernels/runtime/bench_support.h"
#include "kernels/runtime/device_timing.h"
#endif

namespace speedrun::cli {

#if SPEEDRUN_HAVE_CUDA

using model::KernelOp;
using model::KernelRow;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Device tensors of pseudo-random values, each in its own allocation (16-byte aligned, as
// the tensor-core and flash kernels want).
class Pool {
 public:
  Tensor make(DType t, std::initializer_list<int64_t> shape, double lo = -1.0, double hi = 1.0) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    buffers_.emplace_back(Device::cuda, static_cast<size_t>(n) * dtype_size(t));
    Tensor x(buffers_.back().data(), t, Device::cuda, shape);
    cuda::fill_pseudo_random(x.ptr, t, n, lo, hi, salt_ += 0x9e3779b9u);
    return x;
  }
  void release() { buffers_.clear(); }

 private:
  std::vector<Buffer> buffers_;
  uint32_t salt_ = 12345;
};

// What the table allocates (for the memory check): the same shapes as Tensors below.
size_t table_bytes(const config::ModelConfig& m, int64_t N, int64_t chunk, DType act, DType emb) {
  const size_t a = dtype_size(act), d = static_cast<size_t>(m.d_model), hd = static_cast<size_t>(m.attn_dim()),
               f = static_cast<size_t>(m.mlp_hidden()), V = static_cast<size_t>(m.padded_vocab_size),
               n = static_cast<size_t>(N), c = static_cast<size_t>(chunk), w = std::max(d, hd);
  size_t b = 0;
  b += 13 * n * w * a;                   // x, y, dx, dy, dx2 and q, k, v, o, do, dq, dk, dv
  b += 3 * n * f * a;                    // f, g, dfg
  b += 3 * f * w * a + 3 * f * w * 4;    // weights and f32 gradients (largest shape each)
  b += 4 * std::max(f, V) * 4;           // biases and their gradients
  b += f * 2;                            // the bf16 layer bias (SPEEDRUN_GEMM_EPILOGUE=fused)
  b += V * d * (a + 4);                  // head weight copy, its gradient
  b += c * V * (4 + a) + 2 * c * 4 + c * d * 2 * a;  // logits, dlogits, targets, losses, hf, dhf
  b += V * d * 4 * 2 + (emb == DType::bf16 ? V * d * 2 : 0);  // table, dtable (+ bf16 copy)
  b += n * 4 * (2 + static_cast<size_t>(m.n_head)) + n * 4;  // tokens, rstd, qk rstd, lse
  b += static_cast<size_t>(m.seq_len * m.head_dim) * 4 + 4 * w * 4;  // rotary tables, gains
  if (m.fp8_head) b += 2 * c * d + 2 * V * d + 2 * c * V;  // FP8 xq, xqt, wq, wqt, g, gt (1 byte each)
  return b;
}

struct Timed {
  double ms = 0;             // median per call
  std::vector<double> all;   // every timed call
};

Timed time_call(const std::function<void()>& call, int timed, int warmup) {
  for (int i = 0; i < warmup; ++i) call();
  cuda::EventTimer timer;
  Timed r;
  for (int i = 0; i < timed; ++i) {
    timer.start();
    call();
    r.all.push_back(timer.stop_ms());
  }
  r.ms = median(r.all);
  return r;
}

const char* attention_name(cuda::AttentionKernel k) {
  switch (k) {
    case cuda::AttentionKernel::tensor_core: return "tc";
    case cuda::AttentionKernel::simt: return "simt";
    case cuda::AttentionKernel::flash: return "flash";
  }
  return "?";
}

}  // namespace

void bench_kernels(const config::RunConfig& cfg, int timed, int warmup, const std::string& json_out) {
  const auto& m = cfg.model;
  const auto& t = cfg.train;
  const CudaStatus status = query_cuda();
  if (status.devices.empty()) throw UserError("bench --kernels: no CUDA device: " + status.no_device_reason);
  const DType act = model::resolve_activation_dtype(t.activation_dtype, Device::cuda);
  const DType emb = model::resolve_embedding_dtype(m, Device::cuda);
  const int64_t B = t.micro_batch_seqs, T = m.seq_len, N = B * T, d = m.d_model, hd = m.attn_dim(),
                f = m.mlp_hidden(), V = m.padded_vocab_size, H = m.n_head, D = m.head_dim;
  const int64_t chunk = model::Gpt::head_chunk_rows(m, Device::cuda, B);
  // The head and ReLU^2 storage the model runs with (SPEEDRUN_HEAD, SPEEDRUN_RELU2): the
  // table times the kernels of that choice.
  const model::Gpt::Storage storage = model::Gpt::storage_choice(Device::cuda, act);

  // Memory: the model (for the whole micro-batch) is freed before the table's tensors are made.
  train::MemoryPlan plan = train::plan_memory(cfg, Device::cuda, act, /*with_optimizer_state=*/false);
  const size_t table_b = table_bytes(m, N, chunk, act, emb);
  size_t free_b = 0, total_b = 0;
  device_memory_info(&free_b, &total_b);
  std::printf("device %s: %s free of %s; the whole micro-batch needs:\n%s", status.devices[0].name.c_str(),
              format_bytes(free_b).c_str(), format_bytes(total_b).c_str(), plan.to_string().c_str());
  std::printf("then the kernel table's own tensors: %s\n", format_bytes(table_b).c_str());
  train::check_plan_fits(plan, free_b, total_b);
  if (table_b > free_b) {
    train::MemoryPlan tp;
    tp.items.push_back({"kernel table tensors", table_b, true});
    train::check_plan_fits(tp, free_b, total_b);
  }

  const cuda::GemmCeiling gemm = measure_gemm_ceiling();
  print_gemm_ceiling(gemm);
  // model.fp8_head: the FP8 rows are rated against the FP8 ceiling (e4m3 x e4m3 -> bf16).
  cuda::GemmCeiling fp8_gemm;
  if (m.fp8_head) {
    fp8_gemm = measure_fp8_gemm_ceiling();
    print_gemm_ceiling(fp8_gemm, "FP8");
  }
  const cuda::CopyBandwidth copy = cuda::measure_copy_bandwidth(size_t{1} << 30, 3, 20);
  std::printf("device-to-device copy: 1 GiB in %.3f ms (median of %d) = %.0f GB/s (read + write)\n", copy.median_ms,
              copy.reps, copy.gb_per_s);

  // The whole micro-batch, as `speedrun bench --device cuda` times it.
  double whole_ms = 0;
  {
    model::Gpt model(m, Device::cuda, B, act);
    model.init_parameters(static_cast<uint64_t>(t.seed));
    model.zero_grad();
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(m.vocab_size - 1));
    std::vector<int32_t> inputs(static_cast<size_t>(N)), targets(inputs.size());
    for (auto& x : inputs) x = tok(rng);
    for (auto& x : targets) x = tok(rng);
    whole_ms = time_call([&] { model.forward_backward(inputs.data(), targets.data(), B); }, timed, warmup).ms;
  }
  cuda::synchronize_stream();

  Pool pool;
  const int64_t w = std::max(d, hd);
  auto flat = [&](DType ty, int64_t rows, int64_t cols, double lo = -1, double hi = 1) {
    return pool.make(ty, {rows, cols}, lo, hi);
  };
  const Tensor x = flat(act, N, w), y = flat(act, N, w), dx = flat(act, N, w), dy = flat(act, N, w);
  const Tensor q = flat(act, N, hd, -1.7, 1.7), k = flat(act, N, hd, -1.7, 1.7), v = flat(act, N, hd);
  const Tensor o = flat(act, N, hd), dout = flat(act, N, hd), dq = flat(act, N, hd), dk = flat(act, N, hd),
               dv = flat(act, N, hd), x2 = flat(act, N, w);
  const Tensor fa = flat(act, N, f), ga = flat(act, N, f), dfa = flat(act, N, f);
  const Tensor wt = flat(act, f, w, -0.05, 0.05), dwt = flat(DType::f32, f, w), bias = flat(DType::f32, 1, std::max(f, V));
  const Tensor dbias = flat(DType::f32, 1, std::max(f, V));
  // The bias a bf16 trunk layer gets: the model's bf16 copy under SPEEDRUN_GEMM_EPILOGUE=fused
  // (cuBLASLt's bias epilogue), else the f32 parameter (model/gpt.cpp: Gpt::bias).
  const bool fused_epilogue = act == DType::bf16 && cuda::gemm_epilogue() == cuda::GemmEpilogue::fused;
  const Tensor layer_bias = fused_epilogue ? flat(DType::bf16, 1, f) : bias;
  const Tensor head_w = flat(act, V, d, -0.05, 0.05), head_dw = flat(DType::f32, V, d);
  const Tensor logits = flat(DType::f32, chunk, V, -20, 20), dlogits = flat(act, chunk, V);
  const Tensor targets = pool.make(DType::i32, {chunk}, 0, static_cast<double>(m.vocab_size));
  const Tensor losses = flat(DType::f32, 1, chunk), hf = flat(act, chunk, d), dhf = flat(act, chunk, d);
  const Tensor table32 = flat(DType::f32, V, d), dtable = flat(DType::f32, V, d);
  const Tensor table = emb == DType::bf16 ? flat(DType::bf16, V, d) : table32;
  const Tensor tokens = pool.make(DType::i32, {N}, 0, static_cast<double>(m.vocab_size));
  const Tensor rstd = flat(DType::f32, 1, N, 0.5, 1.5), qk_rstd = flat(DType::f32, 1, N * H, 0.5, 1.5);
  const Tensor lse = pool.make(DType::f32, {B, H, T});
  const Tensor cos = flat(DType::f32, T, D / 2), sin = flat(DType::f32, T, D / 2);
  ops::rotary_tables(cos, sin, D, m.rotary_base);
  const Tensor gains = flat(DType::f32, 1, w, 0.5, 1.5), dgains = flat(DType::f32, 1, w);
  const double eps = m.rmsnorm_eps;
  // model.fp8_head: the FP8 operands and their copies (one byte an element), written by the
  // forward row's call before the backward row reads them (rows run in table order).
  std::vector<Buffer> fp8_bytes;
  auto fp8_buffer = [&](DType k, std::initializer_list<int64_t> shape) {
    int64_t n = 1;
    for (int64_t x2 : shape) n *= x2;
    fp8_bytes.emplace_back(m.fp8_head ? Device::cuda : Device::cpu, static_cast<size_t>(m.fp8_head ? n : 1));
    return Tensor(fp8_bytes.back().data(), k, Device::cuda, shape);
  };
  const Tensor xq8 = fp8_buffer(DType::e4m3, {chunk, d}), wq8 = fp8_buffer(DType::e4m3, {V, d});
  const ops::Fp8HeadCuda fp8_cu{fp8_buffer(DType::e4m3, {d, chunk}), fp8_buffer(DType::e4m3, {d, V}),
                                fp8_buffer(DType::e5m2, {chunk, V}), fp8_buffer(DType::e5m2, {V, chunk})};
  const ops::Fp8HeadScales fp8_scales = model::fp8_head_scales(m);
  // The model's cap (model::Gpt's constructor).
  SoftCap cap{SoftCap::Kind::none, 0.0, 1.0};
  if (m.logit_softcap == "algebraic") cap = {SoftCap::Kind::algebraic, m.logit_cap, 1.0};
  if (m.logit_softcap == "sigmoid")
    cap = {SoftCap::Kind::sigmoid, m.logit_cap, m.sigmoid_temperature * std::sqrt(static_cast<double>(d))};

  // The first rows x c elements of a (rows, >= c) buffer, as a (rows, c) matrix.
  auto mat = [](const Tensor& t2, int64_t rows, int64_t c) {
    return t2.reshaped({t2.numel()}).slice_rows(0, rows * c).reshaped({rows, c});
  };
  auto heads = [&](const Tensor& t2) { return t2.reshaped({B, T, H, D}); };
  auto weight = [&](int64_t out, int64_t in) { return wt.reshaped({f * w}).slice_rows(0, out * in).reshaped({out, in}); };
  auto weight_grad = [&](int64_t out, int64_t in) {
    return dwt.reshaped({f * w}).slice_rows(0, out * in).reshaped({out, in});
  };
  auto vec = [](const Tensor& t1, int64_t n) { return t1.reshaped({t1.numel()}).slice_rows(0, n); };

  // The call for a row, on tensors of the row's shape.
  auto call_for = [&](const KernelRow& r) -> std::function<void()> {
    const int64_t in = r.in, out = r.out;
    switch (r.op) {
      case KernelOp::embedding_fwd:
        return [&, in] { ops::embedding_forward(mat(x, N, in), tokens, table); };
      case KernelOp::rmsnorm_fwd:
        return [&, in] { ops::rmsnorm_forward(mat(y, N, in), vec(rstd, N), mat(x, N, in), vec(gains, in), eps); };
      case KernelOp::linear_fwd:
        return [&, in, out] {
          ops::linear_forward(mat(out == f ? fa : y, N, out), mat(in == f ? ga : x, N, in), weight(out, in),
                              vec(layer_bias, out));
        };
      case KernelOp::qk_norm_fwd:
        return [&, in] { ops::qk_norm_forward(mat(q, N, in), vec(qk_rstd, N * H), mat(x2, N, in), D, eps); };
      case KernelOp::rotary_fwd:
        return [&] { ops::rotary_forward(heads(q), heads(q), cos, sin); };
      case KernelOp::attention_fwd:
        return [&] { ops::attention_forward(heads(o), lse, heads(q), heads(k), heads(v), m.attn_scale); };
      case KernelOp::residual_fwd:
        return [&, in] { ops::residual_forward(mat(dx, N, in), mat(x, N, in), mat(y, N, in)); };
      case KernelOp::residual_rmsnorm_fwd:  // sum to dx, the normed rows to dy (neither over x, y)
        return [&, in] {
          ops::residual_rmsnorm_forward(mat(dx, N, in), mat(dy, N, in), vec(rstd, N), mat(x, N, in), mat(y, N, in),
                                        vec(gains, in), eps);
        };
      case KernelOp::relu2_fwd:
        return [&] { ops::relu2_forward(ga, fa); };
      case KernelOp::head_fwd:  // the fused head's bf16 logits go to the act-dtype chunk
        return [&] { ops::linear_forward(storage.fused_head ? dlogits : logits, hf, head_w, vec(bias, V)); };
      case KernelOp::cross_entropy:
        return [&] { ops::softcap_cross_entropy(vec(losses, chunk), logits, logits, targets, cap, 1.0); };
      case KernelOp::cross_entropy_fused:
        return [&] { ops::softcap_cross_entropy(vec(losses, chunk), dlogits, dlogits, targets, cap, 1.0); };
      case KernelOp::convert_dlogits:
        return [&] { ops::convert(dlogits, logits); };
      case KernelOp::head_bwd:
        return [&] { ops::linear_backward(dhf, head_dw, vec(dbias, V), dlogits, hf, head_w, false); };
      case KernelOp::head_fp8_fwd:
        return [&] { ops::fp8_head_forward(logits, xq8, wq8, hf, head_w, fp8_scales, fp8_cu); };
      case KernelOp::head_fp8_bwd:
        return [&] { ops::fp8_head_backward(dhf, head_dw, logits, xq8, wq8, fp8_scales, false, fp8_cu); };
      case KernelOp::linear_bwd:
        return [&, in, out, acc = r.accumulate] {
          ops::linear_backward(mat(in == f ? dfa : dx, N, in), weight_grad(out, in), vec(dbias, out),
                               mat(out == f ? fa : dy, N, out), mat(in == f ? ga : x, N, in), weight(out, in), acc);
        };
      case KernelOp::relu2_bwd:
        return [&] { ops::relu2_backward(dfa, dfa, fa); };
      case KernelOp::relu2_bwd_recompute:  // g out of place: fa stays the table's f
        return [&] { ops::relu2_backward_recompute(dfa, ga, dfa, fa); };
      case KernelOp::rmsnorm_bwd:
        return [&, in, acc = r.accumulate] {
          ops::rmsnorm_backward(mat(dx, N, in), vec(dgains, in), mat(dy, N, in), mat(x, N, in), vec(gains, in),
                                vec(rstd, N), acc);
        };
      case KernelOp::attention_bwd:
        return [&] {
          ops::attention_backward(heads(dq), heads(dk), heads(dv), heads(dout), heads(q), heads(k), heads(v), heads(o),
                                  lse, m.attn_scale);
        };
      case KernelOp::rotary_bwd:
        return [&] { ops::rotary_backward(heads(dq), heads(dq), cos, sin); };
      case KernelOp::qk_norm_bwd:
        return [&, in] { ops::qk_norm_backward(mat(dk, N, in), heads(dq).reshaped({N, in}), mat(x2, N, in), vec(qk_rstd, N * H), D); };
      case KernelOp::qk_norm_rotary_fwd:
        return [&] { ops::qk_norm_rotary_forward(heads(q), vec(qk_rstd, N * H), heads(x2), cos, sin, eps); };
      case KernelOp::qk_norm_rotary_bwd:  // dx to dk (not over x2, which the fused row's x is)
        return [&] { ops::qk_norm_rotary_backward(heads(dk), heads(dq), heads(x2), vec(qk_rstd, N * H), cos, sin); };
      case KernelOp::embedding_bwd:
        return [&, in] { ops::embedding_backward(dtable, tokens, mat(dx, N, in)); };
    }
    throw std::logic_error("bench --kernels: an op without a call");
  };
  // The forward state the backward rows read (lse and out of this q, k, v; the norms' rstd).
  ops::attention_forward(heads(o), lse, heads(q), heads(k), heads(v), m.attn_scale);
  ops::rmsnorm_forward(mat(y, N, d), vec(rstd, N), mat(x, N, d), vec(gains, d), eps);
  ops::qk_norm_forward(mat(q, N, hd), vec(qk_rstd, N * H), mat(x2, N, hd), D, eps);

  struct Result {
    KernelRow row;
    std::string kernel;  // the selectable kernel set it ran on ("" when there is one)
    Timed time;
  };
  std::vector<Result> results;
  // The fused residual + norm is model::Gpt's (track3) only: record #26 keeps its separate calls.
  const std::vector<KernelRow> rows =
      model::micro_batch_kernel_rows(m, B, act, emb, chunk, storage.fused_head, storage.relu2_recompute,
                                     m.arch == "track3" && cuda::norm_fusion() == cuda::NormFusion::on);
  // The attention and RMSNorm kernels are the ones selected (SPEEDRUN_ATTENTION,
  // SPEEDRUN_RMSNORM): run the bench once per selection (scripts/cuda_check.sh does), so that a
  // kernel that fails cannot take the other table down with it.
  const cuda::AttentionKernel attention_selected = cuda::attention_kernel();
  const cuda::RmsNormKernel norm_selected = cuda::rmsnorm_kernel();
  const char* norm_name = norm_selected == cuda::RmsNormKernel::fast ? "fast" : "legacy";
  const char* epilogue_name = cuda::gemm_epilogue() == cuda::GemmEpilogue::fused ? "fused" : "separate";
  for (const KernelRow& r : rows) {
    const bool attention = r.op == KernelOp::attention_fwd || r.op == KernelOp::attention_bwd;
    const bool norm = r.op == KernelOp::rmsnorm_fwd || r.op == KernelOp::rmsnorm_bwd ||
                      r.op == KernelOp::qk_norm_fwd || r.op == KernelOp::qk_norm_bwd;
    const bool head = r.op == KernelOp::head_fwd || r.op == KernelOp::cross_entropy ||
                      r.op == KernelOp::cross_entropy_fused || r.op == KernelOp::convert_dlogits ||
                      r.op == KernelOp::head_bwd;
    const bool relu2_bwd = r.op == KernelOp::relu2_bwd || r.op == KernelOp::relu2_bwd_recompute;
    const bool linear = r.op == KernelOp::linear_fwd || r.op == KernelOp::linear_bwd;
    const std::string kernel = attention ? (act == DType::bf16 ? attention_name(attention_selected) : "simt")
                               : r.op == KernelOp::residual_rmsnorm_fwd || r.op == KernelOp::qk_norm_rotary_fwd ||
                                         r.op == KernelOp::qk_norm_rotary_bwd
                                   ? "fused"
                               : norm      ? norm_name
                               : head      ? (storage.fused_head ? "fused" : "legacy")
                               : relu2_bwd ? (storage.relu2_recompute ? "recomp" : "legacy")
                               : linear    ? (act == DType::bf16 ? epilogue_name : "")
                                           : "";
    results.push_back({r, kernel, time_call(call_for(r), timed, warmup)});
  }
  cuda::synchronize_stream();

  std::printf("\nkernel table: %s, one micro-batch of %lld x %lld tokens, %s activations; median of %d calls after %d "
              "warm-up, CUDA events; per-op figures are one call, 'x' the calls per micro-batch\n",
              cfg.name.c_str(), (long long)B, (long long)T, dtype_name(act), timed, warmup);
  std::printf("%-40s %-8s %7s %10s %10s %10s %8s\n", "op", "kernel", "x", "ms/call", "ms/micro", "TFLOP/s|GB/s",
              "% ceil");
  double total = 0;
  nlohmann::json jrows = nlohmann::json::array();
  for (const Result& res : results) {
    const KernelRow& r = res.row;
    const double per_micro = res.time.ms * r.count;
    const bool compute = r.flops > 0;
    const double rate = compute ? r.flops / (res.time.ms * 1e-3) / 1e12 : r.bytes / (res.time.ms * 1e-3) / 1e9;
    const double pct = 100.0 * rate / (compute ? (r.fp8 ? fp8_gemm.tflops : gemm.tflops) : copy.gb_per_s);
    total += per_micro;
    std::printf("%-40s %-8s %7.2f %10.4f %10.3f %8.1f %s %7.1f%%\n", r.name.c_str(), res.kernel.c_str(), r.count,
                res.time.ms, per_micro, rate, compute ? "TF" : "GB", pct);
    jrows.push_back({{"op", r.name},
                     {"kernel", res.kernel},
                     {"calls_per_micro_batch", r.count},
                     {"rows", r.rows},
                     {"in", r.in},
                     {"out", r.out},
                     {"ms", res.time.ms},
                     {"ms_all", res.time.all},
                     {"ms_per_micro_batch", per_micro},
                     {"flops", r.flops},
                     {"bytes", r.bytes},
                     {compute ? "tflops" : "gb_per_s", rate},
                     {"fp8", r.fp8},
                     {"percent_of_ceiling", pct}});
  }
  std::printf("sum of the ops: %.3f ms; whole micro-batch (forward_backward, median of %d): %.3f ms; "
              "difference %.3f ms (launch gaps, id and loss copies, unlisted small ops)\n",
              total, timed, whole_ms, whole_ms - total);
  if (!json_out.empty()) {
    nlohmann::json j = {{"config", cfg.name},
                        {"commit", SPEEDRUN_GIT_COMMIT},
                        {"device_name", status.devices[0].name},
                        {"activation_dtype", dtype_name(act)},
                        {"micro_batch_seqs", B},
                        {"seq_len", T},
                        {"timed", timed},
                        {"warmup", warmup},
                        {"attention_kernel", attention_name(attention_selected)},
                        {"rmsnorm_kernel", norm_name},
                        {"norm_fusion", cuda::norm_fusion() == cuda::NormFusion::on ? "on" : "off"},
                        {"gemm_epilogue", epilogue_name},
                        {"gemm_ceiling", gemm_ceiling_json(gemm)},
                        {"fp8_gemm_ceiling", m.fp8_head ? gemm_ceiling_json(fp8_gemm) : nlohmann::json()},
                        {"copy_bandwidth", {{"bytes", copy.bytes}, {"reps", copy.reps}, {"median_ms", copy.median_ms},
                                            {"gb_per_s", copy.gb_per_s}}},
                        {"rows", jrows},
                        {"sum_ms", total},
                        {"micro_batch_ms", whole_ms}};
    write_text_file_atomic(json_out, j.dump(2) + "\n");
  }
}

#else

void bench_kernels(const config::RunConfig&, int, int, const std::string&) {
  throw UserError(
      "bench --kernels times the CUDA kernels and needs a build with CUDA: this binary was built without CUDA");
}

#endif

}  // namespace speedrun::cli
