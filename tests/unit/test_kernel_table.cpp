// model::micro_batch_kernel_rows (the rows of `speedrun bench --kernels`): the ops, their
// counts and the work they are charged with must add up to what the model does.
#include <gtest/gtest.h>

#include <set>

#include "config/run_config.h"
#include "model/flops.h"
#include "model/gpt.h"
#include "model/kernel_table.h"

namespace speedrun::test {
namespace {

using model::KernelOp;

double sum_flops(const std::vector<model::KernelRow>& rows, std::initializer_list<KernelOp> ops) {
  double s = 0;
  for (const auto& r : rows)
    for (KernelOp op : ops)
      if (r.op == op) s += r.count * r.flops;
  return s;
}

// Track 3 and a small model whose widths all differ (d 96, attn_dim 128, mlp 384, vocab
// not a multiple of the chunk), so that a row with in and out swapped cannot pass.
TEST(KernelTable, ProductsAddUpToTheModelsFlops) {
  config::ModelConfig small;
  small.n_layer = 3;
  small.d_model = 96;
  small.n_head = 2;
  small.head_dim = 64;
  small.seq_len = 80;
  small.vocab_size = 1000;
  small.padded_vocab_size = 1024;
  for (const config::ModelConfig& m : {config::ModelConfig{}, small}) {
    for (const int64_t B : {int64_t{1}, int64_t{64}}) {
      const int64_t chunk = model::Gpt::head_chunk_rows(m, Device::cuda, B);
      const auto rows = model::micro_batch_kernel_rows(m, B, DType::bf16, DType::f32, chunk);
      const double N = static_cast<double>(B * m.seq_len);
      // 6 FLOPs per matmul parameter and token: forward 2, backward 4 (model/flops.h).
      const double products =
          sum_flops(rows, {KernelOp::linear_fwd, KernelOp::linear_bwd, KernelOp::head_fwd, KernelOp::head_bwd});
      EXPECT_NEAR(products / (6.0 * static_cast<double>(model::matmul_params(m)) * N), 1.0, 1e-12) << B;
      // Attention: forward + 2.5 x forward = 3.5 / 3 of flops.h's 6 L T attn_dim per token.
      const double attention = sum_flops(rows, {KernelOp::attention_fwd, KernelOp::attention_bwd});
      const double flops_h = model::flops_per_token(m) * N - 6.0 * static_cast<double>(model::matmul_params(m)) * N;
      EXPECT_NEAR(attention / flops_h, 3.5 / 3.0, 1e-12) << B;
      // Memory-bound rows have bytes and no FLOPs, compute rows the reverse.
      for (const auto& r : rows) {
        EXPECT_TRUE((r.flops > 0) != (r.bytes > 0)) << r.name;
        EXPECT_GT(r.count, 0) << r.name;
      }
    }
  }
}

TEST(KernelTable, EveryOpOfAMicroBatchOnce) {
  const config::ModelConfig m{};
  const int64_t L = m.n_layer;
  auto rows = model::micro_batch_kernel_rows(m, 64, DType::bf16, DType::bf16, 2668);
  std::set<KernelOp> seen;
  double rmsnorm_fwd = 0, rmsnorm_bwd = 0, linear_fwd = 0, linear_bwd = 0;
  for (const auto& r : rows) {
    seen.insert(r.op);
    if (r.op == KernelOp::rmsnorm_fwd) rmsnorm_fwd += r.count;
    if (r.op == KernelOp::rmsnorm_bwd) rmsnorm_bwd += r.count;
    if (r.op == KernelOp::linear_fwd) linear_fwd += r.count;
    if (r.op == KernelOp::linear_bwd) linear_bwd += r.count;
    if (r.op == KernelOp::head_fwd) EXPECT_DOUBLE_EQ(r.count, 65536.0 / 2668.0);
  }
  // Every op, convert included (bf16), but the two of the storage choices (next test) and
  // the fused residual + norm (FusedNormRows).
  EXPECT_EQ(seen.size(), static_cast<size_t>(KernelOp::embedding_bwd) + 1 - 3);
  EXPECT_EQ(seen.count(KernelOp::cross_entropy_fused) + seen.count(KernelOp::relu2_bwd_recompute) +
                seen.count(KernelOp::residual_rmsnorm_fwd) + seen.count(KernelOp::qk_norm_rotary_fwd) +
                seen.count(KernelOp::qk_norm_rotary_bwd),
            0u);
  EXPECT_EQ(rmsnorm_fwd, 2 * L + 2);  // norm_in, two per block, the final norm
  EXPECT_EQ(rmsnorm_bwd, 2 * L + 2);
  EXPECT_EQ(linear_fwd, 6 * L);  // q, k, v, proj, fc, mlp proj
  EXPECT_EQ(linear_bwd, 6 * L);
  // f32 activations: no dlogits conversion.
  rows = model::micro_batch_kernel_rows(m, 64, DType::f32, DType::f32, 2668);
  for (const auto& r : rows) EXPECT_NE(r.op, KernelOp::convert_dlogits) << r.name;
  EXPECT_THROW(model::micro_batch_kernel_rows(m, 0, DType::f32, DType::f32, 1), std::invalid_argument);
}

// The fused head's rows: the product (same FLOPs) into bf16 logits and one cross-entropy pass
// that reads each bf16 logit once and writes its gradient once (201,224 bytes per row of
// 50,304: what a GPU run divides by the time for GB/s), no conversion row. Recompute: the
// relu^2 backward row moves f, dout, g and dx (4 x 2 bytes per element).
TEST(KernelTable, FusedHeadAndRelu2RecomputeRows) {
  const config::ModelConfig m{};
  const int64_t chunk = 2668, V = m.padded_vocab_size, N = 64 * m.seq_len;
  const auto legacy = model::micro_batch_kernel_rows(m, 64, DType::bf16, DType::f32, chunk);
  const auto fused = model::micro_batch_kernel_rows(m, 64, DType::bf16, DType::f32, chunk, true, true);
  std::set<KernelOp> seen;
  for (const auto& r : fused) {
    seen.insert(r.op);
    if (r.op == KernelOp::cross_entropy_fused) EXPECT_DOUBLE_EQ(r.bytes, static_cast<double>(chunk) * (4.0 * V + 8));
    if (r.op == KernelOp::relu2_bwd_recompute)
      EXPECT_DOUBLE_EQ(r.bytes, 8.0 * static_cast<double>(N) * static_cast<double>(m.mlp_hidden()));
  }
  EXPECT_EQ(static_cast<double>(chunk) * (4.0 * V + 8) / chunk, 201224.0);
  EXPECT_EQ(seen.count(KernelOp::cross_entropy_fused), 1u);
  EXPECT_EQ(seen.count(KernelOp::relu2_bwd_recompute), 1u);
  for (KernelOp gone : {KernelOp::cross_entropy, KernelOp::convert_dlogits, KernelOp::relu2_bwd})
    EXPECT_EQ(seen.count(gone), 0u) << static_cast<int>(gone);
  EXPECT_EQ(sum_flops(fused, {KernelOp::head_fwd, KernelOp::head_bwd}),
            sum_flops(legacy, {KernelOp::head_fwd, KernelOp::head_bwd}));
  EXPECT_EQ(fused.size() + 1, legacy.size());  // the conversion row is gone
}

// SPEEDRUN_FUSE_NORMS=1: the 2 L residual adds and the 2 L norms that read their sums become
// 2 L fused rows moving 4 a bytes per element (a and b read, sum and out written) + 4 per row
// (rstd); 2 plain norm rows stay (the embedding's and layer 0's first). Bytes per micro-batch
// drop by 2 L (3 + 2 - 4) N d a: the norm's read of the sum, saved per add.
TEST(KernelTable, FusedNormRows) {
  const config::ModelConfig m{};
  const int64_t chunk = 2668, N = 64 * m.seq_len, d = m.d_model, L = m.n_layer;
  const double nd = static_cast<double>(N) * static_cast<double>(d);
  const auto plain = model::micro_batch_kernel_rows(m, 64, DType::bf16, DType::f32, chunk);
  const auto fused = model::micro_batch_kernel_rows(m, 64, DType::bf16, DType::f32, chunk, false, false, true);
  auto find = [](const std::vector<model::KernelRow>& rows, KernelOp op) -> const model::KernelRow* {
    for (const auto& r : rows)
      if (r.op == op) return &r;
    return nullptr;
  };
  const model::KernelRow* fr = find(fused, KernelOp::residual_rmsnorm_fwd);
  ASSERT_NE(fr, nullptr);
  EXPECT_EQ(fr->count, 2.0 * L);
  EXPECT_DOUBLE_EQ(fr->bytes, 4 * nd * 2 + 4.0 * N);
  EXPECT_EQ(find(fused, KernelOp::residual_fwd), nullptr);
  EXPECT_EQ(find(plain, KernelOp::residual_rmsnorm_fwd), nullptr);  // the negative control
  ASSERT_NE(find(fused, KernelOp::rmsnorm_fwd), nullptr);
  EXPECT_EQ(find(fused, KernelOp::rmsnorm_fwd)->count, 2.0);
  EXPECT_EQ(find(plain, KernelOp::rmsnorm_fwd)->count, 2.0 * L + 2);
  auto total_bytes = [](const std::vector<model::KernelRow>& rows) {
    double b = 0;
    for (const auto& r : rows) b += r.count * r.bytes;
    return b;
  };
  // QK-norm + rotary: one row each way instead of two; the rotary passes' bytes are saved.
  const int64_t hd = m.attn_dim(), H = m.n_head;
  const double nhd = static_cast<double>(N) * static_cast<double>(hd), heads = static_cast<double>(N * H);
  for (KernelOp gone : {KernelOp::qk_norm_fwd, KernelOp::rotary_fwd, KernelOp::rotary_bwd, KernelOp::qk_norm_bwd})
    EXPECT_EQ(find(fused, gone), nullptr) << static_cast<int>(gone);
  const model::KernelRow* qf = find(fused, KernelOp::qk_norm_rotary_fwd);
  const model::KernelRow* qb = find(fused, KernelOp::qk_norm_rotary_bwd);
  ASSERT_NE(qf, nullptr);
  ASSERT_NE(qb, nullptr);
  EXPECT_EQ(qf->count, 2.0 * L);
  EXPECT_EQ(qb->count, 2.0 * L);
  EXPECT_DOUBLE_EQ(qf->bytes, 2 * nhd * 2 + 4 * heads);
  EXPECT_DOUBLE_EQ(qb->bytes, 3 * nhd * 2 + 4 * heads);
  EXPECT_EQ(find(plain, KernelOp::qk_norm_rotary_fwd), nullptr);
  // Saved per micro-batch: the norm's re-read of each residual sum (2 L N d a) and both
  // rotary passes each way (2 x 2 L x 2 N hd a).
  EXPECT_DOUBLE_EQ(total_bytes(plain) - total_bytes(fused), 2.0 * L * nd * 2 + 2 * (2.0 * L * 2 * nhd * 2));
  EXPECT_EQ(fused.size() + 2, plain.size());
}

// model.fp8_head (record #26): the head rows are the FP8 ones, rated against the FP8 ceiling,
// with the FLOPs of the plain head (2 N d V forward, twice that backward); no dlogits
// conversion (the FP8 backward quantizes the f32 gradient itself).
TEST(KernelTable, Fp8HeadRows) {
  config::ModelConfig m;
  m.arch = "record26";
  m.fp8_head = true;
  const int64_t B = 1, chunk = 4096, N = B * m.seq_len;
  const auto rows = model::micro_batch_kernel_rows(m, B, DType::bf16, DType::f32, chunk);
  config::ModelConfig plain = m;
  plain.fp8_head = false;
  const auto plain_rows = model::micro_batch_kernel_rows(plain, B, DType::bf16, DType::f32, chunk);
  int fp8 = 0;
  for (const auto& r : rows) {
    EXPECT_NE(r.op, KernelOp::head_fwd) << r.name;
    EXPECT_NE(r.op, KernelOp::head_bwd) << r.name;
    EXPECT_NE(r.op, KernelOp::convert_dlogits) << r.name;
    EXPECT_EQ(r.fp8, r.op == KernelOp::head_fp8_fwd || r.op == KernelOp::head_fp8_bwd) << r.name;
    fp8 += r.fp8;
  }
  EXPECT_EQ(fp8, 2);
  const double d = static_cast<double>(m.d_model), V = static_cast<double>(m.padded_vocab_size);
  EXPECT_DOUBLE_EQ(sum_flops(rows, {KernelOp::head_fp8_fwd}), 2.0 * static_cast<double>(N) * d * V);
  EXPECT_DOUBLE_EQ(sum_flops(rows, {KernelOp::head_fp8_bwd}), 4.0 * static_cast<double>(N) * d * V);
  EXPECT_DOUBLE_EQ(sum_flops(rows, {KernelOp::head_fp8_fwd, KernelOp::head_fp8_bwd}),
                   sum_flops(plain_rows, {KernelOp::head_fwd, KernelOp::head_bwd}));
  for (const auto& r : plain_rows) EXPECT_FALSE(r.fp8) << r.name;
}

}  // namespace
}  // namespace speedrun::test
