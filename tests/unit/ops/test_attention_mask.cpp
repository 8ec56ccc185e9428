// ops::attention_forward / attention_backward with an ops::AttentionMask (record26's causal,
// same-document, sliding-window-of-blocks attention: ../shared/specs/model-record26.md), and
// the block rule against upstream's FlexAttention block-mask construction.
#include <cstdlib>

#include "cuda_op_case.h"
#include "kernels/ops/attention_mask.h"
#include "ops/cpu/attention.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

struct Dims {
  int64_t batch, seq, heads, head_dim;
  int64_t numel() const { return batch * seq * heads * head_dim; }
  int64_t at(int64_t b, int64_t t, int64_t h) const { return ((b * seq + t) * heads + h) * head_dim; }
};

struct MaskCase {
  Dims d;
  int64_t block_size, window_blocks;
  bool documents;
  double scale;
};

// The spec's rule, token by token: causal, same document, key block among the window_blocks
// nearest blocks at or before the query's (window_blocks <= 0: no window).
bool visible(const std::vector<int32_t>& docs, const MaskCase& c, int64_t b, int64_t t, int64_t s) {
  if (s > t) return false;
  if (c.documents && docs[b * c.d.seq + s] != docs[b * c.d.seq + t]) return false;
  if (c.window_blocks > 0 && t / c.block_size - s / c.block_size >= c.window_blocks) return false;
  return true;
}

// Document numbers as the model makes them: the running count of separators, each separator
// (drawn with probability p) opening a document.
std::vector<int32_t> random_documents(std::mt19937_64& rng, int64_t batch, int64_t seq, double p) {
  std::bernoulli_distribution separator(p);
  std::vector<int32_t> docs(static_cast<size_t>(batch * seq));
  for (int64_t b = 0; b < batch; ++b) {
    int32_t doc = 0;
    for (int64_t t = 0; t < seq; ++t) {
      if (separator(rng)) ++doc;
      docs[b * seq + t] = doc;
    }
  }
  return docs;
}

// The definition with a dense mask, in double.
void reference(const MaskCase& c, const std::vector<int32_t>& docs, const std::vector<double>& q,
               const std::vector<double>& k, const std::vector<double>& v, std::vector<double>& out,
               std::vector<double>& lse) {
  const Dims& d = c.d;
  out.assign(d.numel(), 0.0);
  lse.assign(d.batch * d.heads * d.seq, 0.0);
  for (int64_t b = 0; b < d.batch; ++b)
    for (int64_t h = 0; h < d.heads; ++h)
      for (int64_t t = 0; t < d.seq; ++t) {
        std::vector<double> score(d.seq, -INFINITY);
        double m = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          if (!visible(docs, c, b, t, s)) continue;
          double dot = 0;
          for (int64_t i = 0; i < d.head_dim; ++i) dot += q[d.at(b, t, h) + i] * k[d.at(b, s, h) + i];
          score[s] = c.scale * dot;
          m = std::max(m, score[s]);
        }
        double sum = 0;
        for (int64_t s = 0; s <= t; ++s) sum += std::isinf(score[s]) ? 0.0 : std::exp(score[s] - m);
        lse[(b * d.heads + h) * d.seq + t] = m + std::log(sum);
        for (int64_t s = 0; s <= t; ++s) {
          if (std::isinf(score[s])) continue;
          const double p = std::exp(score[s] - m) / sum;
          for (int64_t i = 0; i < d.head_dim; ++i) out[d.at(b, t, h) + i] += p * v[d.at(b, s, h) + i];
        }
      }
}

class OpsAttentionMask : public OpsTest {
 protected:
  ops::AttentionMask mask_of(const MaskCase& c, std::vector<int32_t>& docs) {
    ops::AttentionMask m;
    if (c.documents) m.doc_ids = view(docs, {c.d.batch, c.d.seq});
    m.block_size = c.block_size;
    m.window_blocks = c.window_blocks;
    return m;
  }
};

const std::initializer_list<MaskCase> kCases = {
    // documents only; window only; both, with blocks of 1, 3 and 4 tokens and windows of 1..3
    {{2, 13, 2, 8}, 4, 0, true, 0.12},  {{1, 17, 1, 6}, 4, 2, false, 0.5}, {{2, 19, 2, 8}, 4, 2, true, 0.12},
    {{1, 23, 3, 4}, 3, 1, true, 1.0},   {{2, 16, 1, 8}, 1, 3, true, 0.7},  {{1, 70, 1, 8}, 8, 3, true, 0.3},
};

TEST_F(OpsAttentionMask, ForwardMatchesDenseMaskReference) {
  for (const MaskCase& c : kCases) {
    const Dims& d = c.d;
    std::vector<int32_t> docs = random_documents(rng_, d.batch, d.seq, 0.15);
    const std::vector<double> q = uniform(d.numel()), k = uniform(d.numel()), v = uniform(d.numel());
    std::vector<double> want_out, want_lse;
    reference(c, docs, q, k, v, want_out, want_lse);
    std::vector<double> qc = q, kc = k, vc = v, out(d.numel()), lse(d.batch * d.heads * d.seq);
    auto shape = [&](auto& buf) { return view(buf, {d.batch, d.seq, d.heads, d.head_dim}); };
    ops::attention_forward(shape(out), view(lse, {d.batch, d.heads, d.seq}), shape(qc), shape(kc), shape(vc), c.scale,
                           mask_of(c, docs));
    const std::string what = "seq " + std::to_string(d.seq) + " block " + std::to_string(c.block_size) + " window " +
                             std::to_string(c.window_blocks) + (c.documents ? " docs" : "");
    expect_near_rel("out " + what, out, want_out, 1e-13);
    expect_near_rel("lse " + what, lse, want_lse, 1e-13);
    // Negative control: the unmasked op differs (the mask is not vacuous on these inputs).
    std::vector<double> plain(d.numel());
    ops::attention_forward(shape(plain), view(lse, {d.batch, d.heads, d.seq}), shape(qc), shape(kc), shape(vc),
                           c.scale);
    double diff = 0;
    for (size_t i = 0; i < plain.size(); ++i) diff = std::max(diff, std::fabs(plain[i] - want_out[i]));
    EXPECT_GT(diff, 1e-3) << what << ": the mask changed nothing";
  }
}

TEST_F(OpsAttentionMask, BackwardMatchesFiniteDifferences) {
  for (const MaskCase& c : kCases) {
    const Dims& d = c.d;
    if (d.seq > 30) continue;  // keep the finite differences quick
    std::vector<int32_t> docs = random_documents(rng_, d.batch, d.seq, 0.15);
    const ops::AttentionMask mask = mask_of(c, docs);
    auto shape = [&](auto& buf) { return view(buf, {d.batch, d.seq, d.heads, d.head_dim}); };
    std::vector<double> q = uniform(d.numel()), k = uniform(d.numel()), v = uniform(d.numel());
    std::vector<double> r = uniform(d.numel()), out(d.numel()), lse(d.batch * d.heads * d.seq);
    auto objective = [&] {
      ops::attention_forward(shape(out), view(lse, {d.batch, d.heads, d.seq}), shape(q), shape(k), shape(v), c.scale,
                             mask);
      return weighted_sum(r, out);
    };
    objective();
    std::vector<double> dq(d.numel()), dk(d.numel()), dv(d.numel());
    ops::attention_backward(shape(dq), shape(dk), shape(dv), shape(r), shape(q), shape(k), shape(v), shape(out),
                            view(lse, {d.batch, d.heads, d.seq}), c.scale, mask);
    const std::string what = "seq " + std::to_string(d.seq) + " window " + std::to_string(c.window_blocks);
    expect_gradient("dq " + what, q, dq, objective);
    expect_gradient("dk " + what, k, dk, objective);
    expect_gradient("dv " + what, v, dv, objective);
  }
}

// Upstream's block masks (train_gpt.py of record #26, GPT.create_blockmasks), transcribed:
// per query block, the key blocks where causal & same-document holds for some token pair
// ("any") are split into "full" ones (for every pair: key block strictly before, both blocks
// inside one document) and "partial" ones; each list is ordered nearest first (argsort of the
// dense row, stable, flipped); build_bm(W) keeps min(partial, max(W - full, 1)) partial and
// min(full, W - 1) full blocks (a negative count keeps none), and inside kept blocks the
// token-level mask_mod (causal & same document) applies.
std::vector<char> upstream_dense_mask(const std::vector<int32_t>& docs, int64_t seq, int64_t bs, int64_t W) {
  const int64_t nb = seq / bs;
  std::vector<char> dense(static_cast<size_t>(seq * seq), 0);
  auto lo = [&](int64_t blk) { return docs[blk * bs]; };
  auto hi = [&](int64_t blk) { return docs[blk * bs + bs - 1]; };
  for (int64_t qb = 0; qb < nb; ++qb) {
    std::vector<int64_t> partial, full;  // nearest first
    for (int64_t kb = qb; kb >= 0; --kb) {
      const bool any = qb >= kb && lo(qb) <= hi(kb) && hi(qb) >= lo(kb);
      const bool all = qb > kb && lo(qb) == hi(kb) && hi(qb) == lo(kb);
      if (all) full.push_back(kb);
      else if (any) partial.push_back(kb);
    }
    const int64_t full_n = static_cast<int64_t>(full.size()), partial_n = static_cast<int64_t>(partial.size());
    const int64_t keep_partial = std::min(partial_n, std::max<int64_t>(W - full_n, 1));
    const int64_t keep_full = std::min(full_n, W - 1);
    std::vector<int64_t> kept(partial.begin(), partial.begin() + std::max<int64_t>(0, keep_partial));
    kept.insert(kept.end(), full.begin(), full.begin() + std::max<int64_t>(0, keep_full));
    for (int64_t kb : kept)
      for (int64_t t = qb * bs; t < qb * bs + bs; ++t)
        for (int64_t s = kb * bs; s < kb * bs + bs; ++s)
          if (s <= t && docs[s] == docs[t]) dense[t * seq + s] = 1;
  }
  return dense;
}

TEST_F(OpsAttentionMask, BlockRuleEqualsUpstreamBlockMasks) {
  // Random documents of every density (from one document to a separator every other token),
  // blocks of 1..8 tokens, every window from 0 blocks (upstream's short window at 1 long block)
  // to more than the sequence. Our window is max(W, 1) blocks (see Record26::layer_window_blocks).
  int64_t checked = 0, window_mattered = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t bs = 1 + trial % 8, nb = 1 + (trial / 8) % 9, seq = bs * nb;
    const double p = std::vector<double>{0.0, 0.02, 0.1, 0.3, 0.5}[trial % 5];
    const std::vector<int32_t> docs = random_documents(rng_, 1, seq, p);
    for (int64_t W = 0; W <= nb + 1; ++W) {
      const std::vector<char> want = upstream_dense_mask(docs, seq, bs, W);
      std::vector<int64_t> start;
      ops::cpu::attention_key_starts(start, docs.data(), 1, seq, bs, std::max<int64_t>(W, 1));
      for (int64_t t = 0; t < seq; ++t)
        for (int64_t s = 0; s < seq; ++s) {
          const bool ours = s <= t && s >= start[t];
          ASSERT_EQ(ours, want[t * seq + s] != 0)
              << "trial " << trial << " block " << bs << " blocks " << nb << " W " << W << " query " << t << " key "
              << s;
        }
      ++checked;
      // Negative control: the window changes the mask in many of these cases.
      if (upstream_dense_mask(docs, seq, bs, W + 1) != want) ++window_mattered;
    }
  }
  EXPECT_GT(checked, 1000);
  EXPECT_GT(window_mattered, checked / 10);
}

TEST_F(OpsAttentionMask, RejectsBadMasks) {
  const Dims d{1, 6, 1, 4};
  std::vector<float> a(d.numel()), b(d.numel()), c(d.numel()), o(d.numel()), lse(6);
  auto shape = [&](auto& buf) { return view(buf, {d.batch, d.seq, d.heads, d.head_dim}); };
  std::vector<int32_t> decreasing = {0, 0, 1, 1, 0, 2}, short_docs = {0, 0, 1};
  ops::AttentionMask m;
  m.doc_ids = view(decreasing, {1, 6});
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(shape(o), view(lse, {1, 1, 6}), shape(a), shape(b), shape(c), 0.12, m),
                          "attention_forward", "doc_ids", "position 4");
  m.doc_ids = view(short_docs, {1, 3});
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(shape(o), view(lse, {1, 1, 6}), shape(a), shape(b), shape(c), 0.12, m),
                          "attention_forward", "doc_ids", "(1, 6)");
  ops::AttentionMask w;
  w.window_blocks = 2;
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(shape(o), view(lse, {1, 1, 6}), shape(a), shape(b), shape(c), 0.12, w),
                          "attention_forward", "block_size");
}

TEST_F(OpsAttentionMask, IsThreadCountDeterministic) {
  const Dims d{2, 150, 3, 32};
  const MaskCase c{d, 16, 3, true, 0.12};
  std::vector<int32_t> docs = random_documents(rng_, d.batch, d.seq, 0.03);
  const ops::AttentionMask mask = mask_of(c, docs);
  auto shape = [&](auto& buf) { return view(buf, {d.batch, d.seq, d.heads, d.head_dim}); };
  std::vector<float> q = cast<float>(uniform(d.numel())), k = cast<float>(uniform(d.numel())),
                     v = cast<float>(uniform(d.numel())), dout = cast<float>(uniform(d.numel()));
  auto run = [&](int threads) {
    std::vector<float> out(d.numel()), lse(d.batch * d.heads * d.seq), dq(d.numel()), dk(d.numel()), dv(d.numel());
    with_threads(threads, [&] {
      ops::attention_forward(shape(out), view(lse, {d.batch, d.heads, d.seq}), shape(q), shape(k), shape(v), 0.12,
                             mask);
      ops::attention_backward(shape(dq), shape(dk), shape(dv), shape(dout), shape(q), shape(k), shape(v), shape(out),
                              view(lse, {d.batch, d.heads, d.seq}), 0.12, mask);
    });
    std::vector<float> all = out;
    for (auto* part : {&lse, &dq, &dk, &dv}) all.insert(all.end(), part->begin(), part->end());
    return all;
  };
  expect_bitwise_equal("out, lse, dq, dk, dv", run(1), run(3));
}

}  // namespace
}  // namespace speedrun::test

// ---- the CUDA kernels' mask (kernels/ops/attention_mask.h), on the host ------------------------
namespace speedrun::test {
namespace {

// cuda::DocWindowMask is host-callable: its per-element rule and its block classification
// against the CPU's definition (start(t) of attention_key_starts), over random layouts, tile
// sizes that are and are not multiples of the window block, and T not a multiple of the tile.
// block() must be exact (masked iff no pair visible, full iff all pairs visible), and the
// tile walks the kernels make (key_begin/key_end per query tile, query_begin/query_end per
// key tile, skipping masked blocks) must visit every visible pair.
TEST_F(OpsAttentionMask, CudaMaskClassifiesBlocksExactly) {
  int64_t blocks = 0, skipped = 0, full = 0, partial = 0;
  for (int trial = 0; trial < 120; ++trial) {
    const int64_t bs = std::vector<int64_t>{1, 4, 16, 128}[trial % 4];
    const int64_t tile = std::vector<int64_t>{8, 16, 64}[(trial / 4) % 3];
    const int64_t seq = 1 + static_cast<int64_t>(rng_() % 300);
    const double p = std::vector<double>{0.0, 0.01, 0.05, 0.3}[(trial / 12) % 4];
    const int64_t batch = 2;
    const std::vector<int32_t> docs = random_documents(rng_, batch, seq, p);
    for (int64_t W : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{3}, (seq + bs - 1) / bs + 1}) {
      std::vector<int64_t> start;
      ops::cpu::attention_key_starts(start, p > 0 ? docs.data() : nullptr, batch, seq, bs, W);
      cuda::DocWindowMask all{p > 0 ? docs.data() : nullptr, seq, static_cast<int>(bs), static_cast<int>(W)};
      for (int64_t b = 0; b < batch; ++b) {
        const cuda::DocWindowMask m = all.at_batch(b);
        auto vis = [&](int64_t t, int64_t s) { return s <= t && s >= start[b * seq + t]; };
        for (int64_t t = 0; t < seq; ++t)
          for (int64_t s = 0; s < seq; ++s) ASSERT_EQ(m.allowed(t, s), vis(t, s)) << "t " << t << " s " << s;
        std::vector<char> covered_by_q(static_cast<size_t>(seq * seq), 0), covered_by_k(covered_by_q);
        for (int64_t q0 = 0; q0 < seq; q0 += tile) {
          const int64_t q1 = std::min(q0 + tile, seq);
          for (int64_t k0 = 0; k0 < seq; k0 += tile) {
            const int64_t k1 = std::min(k0 + tile, seq);
            int64_t seen = 0;
            for (int64_t t = q0; t < q1; ++t)
              for (int64_t s = k0; s < k1; ++s) seen += vis(t, s);
            const cuda::BlockKind kind = m.block(q0, q1, k0, k1);
            const cuda::BlockKind want = seen == 0                       ? cuda::BlockKind::masked
                                         : seen == (q1 - q0) * (k1 - k0) ? cuda::BlockKind::full
                                                                         : cuda::BlockKind::partial;
            ASSERT_EQ(static_cast<int>(kind), static_cast<int>(want))
                << "trial " << trial << " q [" << q0 << ", " << q1 << ") k [" << k0 << ", " << k1 << ") W " << W;
            ++blocks;
            skipped += want == cuda::BlockKind::masked;
            full += want == cuda::BlockKind::full;
            partial += want == cuda::BlockKind::partial;
            // The int instantiation (the flash kernels') agrees.
            ASSERT_EQ(static_cast<int>(m.block<int>(static_cast<int>(q0), static_cast<int>(q1), static_cast<int>(k0),
                                                    static_cast<int>(k1))),
                      static_cast<int>(want));
          }
          // The forward's walk: key tiles from key_begin's tile to key_end, unmasked ones.
          for (int64_t k0 = m.key_begin(q0) / tile * tile; k0 < std::min(m.key_end(q1), seq); k0 += tile) {
            const int64_t k1 = std::min(k0 + tile, seq);
            if (m.block(q0, q1, k0, k1) == cuda::BlockKind::masked) continue;
            for (int64_t t = q0; t < q1; ++t)
              for (int64_t s = k0; s < k1; ++s) covered_by_q[t * seq + s] = 1;
          }
        }
        // The backward's walk over query tiles per key tile.
        for (int64_t k0 = 0; k0 < seq; k0 += tile) {
          const int64_t k1 = std::min(k0 + tile, seq);
          for (int64_t q0 = m.query_begin(k0) / tile * tile; q0 < m.query_end(k1, seq); q0 += tile) {
            const int64_t q1 = std::min(q0 + tile, seq);
            if (m.block(q0, q1, k0, k1) == cuda::BlockKind::masked) continue;
            for (int64_t t = q0; t < q1; ++t)
              for (int64_t s = k0; s < k1; ++s) covered_by_k[t * seq + s] = 1;
          }
        }
        for (int64_t t = 0; t < seq; ++t)
          for (int64_t s = 0; s < seq; ++s)
            if (vis(t, s)) {
              ASSERT_TRUE(covered_by_q[t * seq + s]) << "forward walk misses t " << t << " s " << s;
              ASSERT_TRUE(covered_by_k[t * seq + s]) << "backward walk misses t " << t << " s " << s;
            }
      }
    }
  }
  // Not vacuous: every kind occurs often.
  EXPECT_GT(skipped, blocks / 10);
  EXPECT_GT(full, blocks / 20);
  EXPECT_GT(partial, blocks / 20);
}

}  // namespace
}  // namespace speedrun::test

// ---- CUDA against the CPU (cuda_op_case.h) -------------------------------------------------
namespace speedrun::test {
namespace {

struct MaskKernelScope {
  cuda::AttentionKernel previous;
  explicit MaskKernelScope(cuda::AttentionKernel k) : previous(cuda::set_attention_kernel(k)) {}
  ~MaskKernelScope() { cuda::set_attention_kernel(previous); }
  MaskKernelScope(const MaskKernelScope&) = delete;
  MaskKernelScope& operator=(const MaskKernelScope&) = delete;
};

// Record #26's mask on every CUDA kernel against the CPU (whose masked attention is checked
// against a dense double reference and finite differences above): f32 on the CUDA-core
// kernels, bf16 on the tensor-core (default), CUDA-core and flash kernels. Several documents
// per row (separators with probability 1/40, so ~T/40 documents), windows of 1..n blocks and
// none, window blocks of 128 (the model's) and of 16 (so the window cuts inside the 64- and
// 128-row tiles), T not a multiple of any tile. Tolerances are AttentionMatchesCpu's
// (cuda_op_case.h): masking removes terms from the same sums, it adds no rounding.
CUDA_OP_CASE(AttentionMaskMatchesCpu) {
  struct Variant {
    DType t;
    cuda::AttentionKernel kernel;
    const char* name;
  };
  const char* env = std::getenv("SPEEDRUN_ATTENTION");
  const std::string only = env ? env : "";
  struct Layout {
    std::array<int64_t, 4> shape;
    int64_t block_size;
    double separator_p;
  };
  const std::vector<Layout> layouts = {{{2, 300, 2, 64}, 128, 1.0 / 40},
                                       {{1, 333, 1, 128}, 16, 1.0 / 40},
                                       {{2, 77, 3, 64}, 16, 0.1},
                                       {{1, 1, 1, 64}, 128, 0.5}};
  for (const Variant& variant : {Variant{DType::f32, cuda::AttentionKernel::simt, "simt"},
                                 Variant{DType::bf16, cuda::AttentionKernel::tensor_core, "tc"},
                                 Variant{DType::bf16, cuda::AttentionKernel::simt, "simt"},
                                 Variant{DType::bf16, cuda::AttentionKernel::flash, "flash"}}) {
    if (!only.empty() && (variant.t != DType::bf16 || only != variant.name)) continue;
    const MaskKernelScope scope(variant.kernel);
    for (const Layout& layout : layouts) {
      const auto [B, T, H, D] = layout.shape;
      const int64_t nb = (T + layout.block_size - 1) / layout.block_size;
      std::vector<int64_t> windows;
      for (int64_t w = 1; w <= nb; w += std::max<int64_t>(1, nb / 6)) windows.push_back(w);
      windows.push_back(0);
      for (const int64_t W : windows) {
        for (const bool documents : {true, false}) {
          if (!documents && W == 0) continue;  // plain causal: AttentionMatchesCpu
          const std::string what = std::string(variant.name) + " block " + std::to_string(layout.block_size) +
                                   " window " + std::to_string(W) + (documents ? " documents" : "");
          for_each_case<4>({variant.t}, {layout.shape}, [&](DType t, std::array<int64_t, 4>) {
            std::vector<int32_t> docs = random_documents(rng_, B, T, layout.separator_p);
            const Dev docs_dev(docs);
            auto mask_of = [&](const Side& s) {
              ops::AttentionMask m;
              if (documents) m.doc_ids = s.device() ? docs_dev.t({B, T}) : Tensor::of(docs.data(), {B, T});
              m.block_size = layout.block_size;
              m.window_blocks = W;
              return m;
            };
            const double scale = 0.12;
            input("q", t, {B, T, H, D}, -1.7, 1.7);
            input("k", t, {B, T, H, D}, -1.7, 1.7);
            input("v", t, {B, T, H, D});
            output("out", t, {B, T, H, D});
            output("lse", DType::f32, {B, H, T});
            run([&](const Side& s) {
              ops::attention_forward(s["out"], s["lse"], s["q"], s["k"], s["v"], scale, mask_of(s));
            });
            expect_near("out", t == DType::f32 ? kF32SumTol : kBf16One);
            expect_near("lse", kF32SumTol);
            from_cpu("o", "out", t);
            from_cpu("lse_ref", "lse", DType::f32);
            input("g", t, {B, T, H, D});
            output("gq", t, {B, T, H, D});
            output("gk", t, {B, T, H, D});
            output("gv", t, {B, T, H, D});
            run([&](const Side& s) {
              ops::attention_backward(s["gq"], s["gk"], s["gv"], s["g"], s["q"], s["k"], s["v"], s["o"],
                                      s["lse_ref"], scale, mask_of(s));
            });
            const double tol = t == DType::f32 ? kF32SumTol : kBf16Two;
            // With T = 1 the only query sees only itself: dq = dk = 0 up to the cancellation of
            // terms up to scale D max|g| max|v| max|k| (AttentionMatchesCpu's bound); otherwise
            // other rows set the scale.
            const double term =
                T == 1 ? scale * static_cast<double>(D) * max_abs(cpu("g")) * max_abs(cpu("v")) * max_abs(cpu("k"))
                       : 0.0;
            expect_near("gq", tol, term);
            expect_near("gk", tol, term);
            expect_near("gv", tol);
          }, what);
        }
      }
    }
  }
}

// Negative control: the CUDA result under the mask differs from the causal one on the same
// inputs (so AttentionMaskMatchesCpu could not pass with the mask ignored).
CUDA_OP_CASE(AttentionMaskChangesTheResult) {
  const int64_t B = 1, T = 300, H = 1, D = 64;
  std::vector<int32_t> docs(T);
  for (int64_t t = 0; t < T; ++t) docs[t] = static_cast<int32_t>(t / 50);  // six documents
  const Dev docs_dev(docs);
  input("q", DType::f32, {B, T, H, D}, -1.7, 1.7);
  input("k", DType::f32, {B, T, H, D}, -1.7, 1.7);
  input("v", DType::f32, {B, T, H, D});
  output("masked", DType::f32, {B, T, H, D});
  output("causal", DType::f32, {B, T, H, D});
  output("lse", DType::f32, {B, H, T});
  const Side s(*this, true);
  ops::attention_forward(s["masked"], s["lse"], s["q"], s["k"], s["v"], 0.12,
                         ops::AttentionMask{docs_dev.t({B, T}), 128, 1});
  ops::attention_forward(s["causal"], s["lse"], s["q"], s["k"], s["v"], 0.12);
  const std::vector<float> a = device("masked"), c = device("causal");
  int64_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += std::abs(a[i] - c[i]) > 1e-3f;
  // Rows 0..49 see the same keys either way; every later row loses keys.
  EXPECT_GT(differ, static_cast<int64_t>(a.size()) / 2);
}

// The CUDA path's own refusals: documents on the wrong device, a window without a block size.
CUDA_OP_CASE(AttentionMaskRefusesBadMasks) {
  const int64_t B = 1, T = 6, H = 1, D = 64;
  input("q", DType::f32, {B, T, H, D});
  output("lse", DType::f32, {B, H, T});
  const Side s(*this, true);
  std::vector<int32_t> docs(T, 0);
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(s["q"], s["lse"], s["q"], s["q"], s["q"], 0.12,
                                                 ops::AttentionMask{Tensor::of(docs.data(), {B, T}), 128, 1}),
                          "mask.doc_ids must be on q's device");
  EXPECT_INVALID_ARGUMENT(
      ops::attention_forward(s["q"], s["lse"], s["q"], s["q"], s["q"], 0.12, ops::AttentionMask{Tensor{}, 0, 2}),
      "needs mask.block_size > 0");
}

}  // namespace
}  // namespace speedrun::test
