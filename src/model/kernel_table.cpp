#include "model/kernel_table.h"

#include <stdexcept>

namespace speedrun::model {

std::vector<KernelRow> micro_batch_kernel_rows(const config::ModelConfig& m, int64_t B, DType act, DType embedding,
                                               int64_t chunk, bool fused_head, bool relu2_recompute,
                                               bool fused_norms) {
  if (B < 1 || chunk < 1 || m.n_layer < 1) throw std::invalid_argument("micro_batch_kernel_rows: sizes must be >= 1");
  const int64_t T = m.seq_len, N = B * T, d = m.d_model, hd = m.attn_dim(), f = m.mlp_hidden(), H = m.n_head;
  const int64_t V = m.padded_vocab_size;
  const double L = static_cast<double>(m.n_layer), n = static_cast<double>(N), a = static_cast<double>(dtype_size(act));
  const double chunks = n / static_cast<double>(chunk), r = static_cast<double>(chunk), v = static_cast<double>(V);
  const double attn_fwd = 2.0 * static_cast<double>(B * H) * static_cast<double>(T) * static_cast<double>(T) *
                          static_cast<double>(m.head_dim);
  auto w = [](int64_t x) { return std::to_string(x); };
  auto product = [&](const std::string& name, KernelOp op, int64_t in, int64_t out, double count, bool acc = false) {
    const double one = 2.0 * n * static_cast<double>(in) * static_cast<double>(out);
    return KernelRow{name, op, N, in, out, acc, count, op == KernelOp::linear_bwd ? 2 * one : one, 0.0};
  };
  auto memory = [&](const std::string& name, KernelOp op, int64_t width, double count, double bytes, bool acc = false) {
    return KernelRow{name, op, N, width, 0, acc, count, 0.0, bytes};
  };
  const double nd = n * static_cast<double>(d), nhd = n * static_cast<double>(hd), nf = n * static_cast<double>(f);
  std::vector<KernelRow> rows;
  // forward_trunk
  rows.push_back(memory("embedding fwd", KernelOp::embedding_fwd, d, 1,
                        nd * static_cast<double>(dtype_size(embedding)) + nd * a + 4 * n));
  rows.push_back(memory("rmsnorm fwd " + w(d), KernelOp::rmsnorm_fwd, d, fused_norms ? 2 : 2 * L + 2,
                        2 * nd * a + 4 * n));
  rows.push_back(product("linear fwd " + w(d) + "->" + w(hd) + " (q, k, v)", KernelOp::linear_fwd, d, hd, 3 * L));
  if (fused_norms) {
    rows.push_back(memory("qk-norm + rotary fwd " + w(m.head_dim), KernelOp::qk_norm_rotary_fwd, hd, 2 * L,
                          2 * nhd * a + 4 * n * static_cast<double>(H)));
  } else {
    rows.push_back(memory("qk-norm fwd " + w(m.head_dim), KernelOp::qk_norm_fwd, hd, 2 * L,
                          2 * nhd * a + 4 * n * static_cast<double>(H)));
    rows.push_back(memory("rotary fwd", KernelOp::rotary_fwd, hd, 2 * L, 2 * nhd * a));
  }
  KernelRow af{"attention fwd", KernelOp::attention_fwd, N, hd, 0, false, L, attn_fwd, 0.0};
  rows.push_back(af);
  rows.push_back(product("linear fwd " + w(hd) + "->" + w(d) + " (attn proj)", KernelOp::linear_fwd, hd, d, L));
  if (fused_norms)
    rows.push_back(memory("residual add + rmsnorm fwd " + w(d), KernelOp::residual_rmsnorm_fwd, d, 2 * L,
                          4 * nd * a + 4 * n));
  else
    rows.push_back(memory("residual add", KernelOp::residual_fwd, d, 2 * L, 3 * nd * a));
  rows.push_back(product("linear fwd " + w(d) + "->" + w(f) + " (mlp fc)", KernelOp::linear_fwd, d, f, L));
  rows.push_back(memory("relu^2 fwd", KernelOp::relu2_fwd, f, L, 2 * nf * a));
  rows.push_back(product("linear fwd " + w(f) + "->" + w(d) + " (mlp proj)", KernelOp::linear_fwd, f, d, L));
  // head_loss, per chunk of `chunk` rows
  const double chunk_flops = 2.0 * r * static_cast<double>(d) * v;
  if (m.fp8_head) {
    // Record #26's FP8 head (ops::fp8_head_forward/backward): the quantization kernels are
    // inside the calls; the f32 logit gradient is read directly (no conversion row).
    KernelRow fwd{"lm head fwd FP8 (e4m3 x, w; f32 logits)", KernelOp::head_fp8_fwd, chunk, d, V, false, chunks,
                  chunk_flops, 0};
    fwd.fp8 = true;
    rows.push_back(fwd);
    rows.push_back(KernelRow{"softcap cross-entropy (loss, dlogits)", KernelOp::cross_entropy, chunk, d, V, false,
                             chunks, 0, 2 * 4 * r * v + 8 * r});
    KernelRow bwd{"lm head bwd FP8 (e5m2 dlogits; dx, dW)", KernelOp::head_fp8_bwd, chunk, d, V, false, chunks,
                  2 * chunk_flops, 0};
    bwd.fp8 = true;
    rows.push_back(bwd);
  } else if (fused_head) {
    // bf16 logits, then one pass: each row read once and its gradient written once in place
    // (2 V a bytes per row, + 4 for the target and 4 for the loss: 201,224 for V = 50,304).
    rows.push_back(KernelRow{"lm head fwd (bf16 logits)", KernelOp::head_fwd, chunk, d, V, false, chunks, chunk_flops, 0});
    rows.push_back(KernelRow{"softcap cross-entropy, one pass (bf16)", KernelOp::cross_entropy_fused, chunk, d, V, false,
                             chunks, 0, 2 * a * r * v + 8 * r});
  } else {
    rows.push_back(KernelRow{"lm head fwd (f32 logits)", KernelOp::head_fwd, chunk, d, V, false, chunks, chunk_flops, 0});
    rows.push_back(KernelRow{"softcap cross-entropy (loss, dlogits)", KernelOp::cross_entropy, chunk, d, V, false,
                             chunks, 0, 2 * 4 * r * v + 8 * r});
  }
  if (!m.fp8_head) {
    if (act != DType::f32 && !fused_head)
      rows.push_back(KernelRow{"dlogits f32 -> " + std::string(dtype_name(act)), KernelOp::convert_dlogits, chunk, d, V,
                               false, chunks, 0, (4 + a) * r * v});
    rows.push_back(
        KernelRow{"lm head bwd (dx, dW, db)", KernelOp::head_bwd, chunk, d, V, false, chunks, 2 * chunk_flops, 0});
  }
  // backward_trunk
  rows.push_back(memory("rmsnorm bwd " + w(d), KernelOp::rmsnorm_bwd, d, 2, 3 * nd * a + 4 * n));
  rows.push_back(product("linear bwd " + w(f) + "->" + w(d) + " (mlp proj)", KernelOp::linear_bwd, f, d, L));
  if (relu2_recompute)
    rows.push_back(memory("relu^2 bwd + g recomputed", KernelOp::relu2_bwd_recompute, f, L, 4 * nf * a));
  else
    rows.push_back(memory("relu^2 bwd", KernelOp::relu2_bwd, f, L, 3 * nf * a));
  rows.push_back(product("linear bwd " + w(d) + "->" + w(f) + " (mlp fc)", KernelOp::linear_bwd, d, f, L));
  rows.push_back(memory("rmsnorm bwd " + w(d) + " (dx +=)", KernelOp::rmsnorm_bwd, d, 2 * L, 4 * nd * a + 4 * n, true));
  rows.push_back(product("linear bwd " + w(hd) + "->" + w(d) + " (attn proj)", KernelOp::linear_bwd, hd, d, L));
  rows.push_back(KernelRow{"attention bwd", KernelOp::attention_bwd, N, hd, 0, false, L, 2.5 * attn_fwd, 0.0});
  if (fused_norms) {
    rows.push_back(memory("rotary + qk-norm bwd " + w(m.head_dim), KernelOp::qk_norm_rotary_bwd, hd, 2 * L,
                          3 * nhd * a + 4 * n * static_cast<double>(H)));
  } else {
    rows.push_back(memory("rotary bwd", KernelOp::rotary_bwd, hd, 2 * L, 2 * nhd * a));
    rows.push_back(memory("qk-norm bwd " + w(m.head_dim), KernelOp::qk_norm_bwd, hd, 2 * L,
                          3 * nhd * a + 4 * n * static_cast<double>(H)));
  }
  rows.push_back(product("linear bwd " + w(d) + "->" + w(hd) + " (q, k, v)", KernelOp::linear_bwd, d, hd, 3 * L));
  rows.push_back(memory("embedding bwd", KernelOp::embedding_bwd, d, 1, nd * a + 2 * nd * 4 + 4 * n));
  return rows;
}

}  // namespace speedrun::model
