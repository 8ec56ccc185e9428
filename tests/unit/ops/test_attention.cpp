// ops::attention_forward / attention_backward (causal, lse-based, no T x T matrix).
#include <cstdlib>

#include "cuda_op_case.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

constexpr double kU32 = 0x1p-24;

struct Dims {
  int64_t batch, seq, heads, head_dim;
  int64_t numel() const { return batch * seq * heads * head_dim; }
  int64_t at(int64_t b, int64_t t, int64_t h) const { return ((b * seq + t) * heads + h) * head_dim; }
  std::string str() const {
    return "(" + std::to_string(batch) + ", " + std::to_string(seq) + ", " + std::to_string(heads) + ", " +
           std::to_string(head_dim) + ")";
  }
};

// The definition, with the full causal probability matrix of each (b, h), in double.
// Also returns, per output element, a bound on the error of an fp32 computation (see below).
struct Reference {
  std::vector<double> out, lse, out_bound, lse_bound;
};
Reference reference_attention(const Dims& d, const std::vector<double>& q, const std::vector<double>& k,
                              const std::vector<double>& v, double scale) {
  Reference r{std::vector<double>(d.numel()), std::vector<double>(d.batch * d.heads * d.seq),
              std::vector<double>(d.numel()), std::vector<double>(d.batch * d.heads * d.seq)};
  for (int64_t b = 0; b < d.batch; ++b) {
    for (int64_t h = 0; h < d.heads; ++h) {
      for (int64_t t = 0; t < d.seq; ++t) {
        std::vector<double> score(t + 1), score_err(t + 1);
        double m = -INFINITY, max_err = 0;
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0, mag = 0;
          for (int64_t i = 0; i < d.head_dim; ++i) {
            dot += q[d.at(b, t, h) + i] * k[d.at(b, s, h) + i];
            mag += std::fabs(q[d.at(b, t, h) + i] * k[d.at(b, s, h) + i]);
          }
          score[s] = scale * dot;
          // fp32 score: a dot in 8 lanes (gamma_{D/8+3}) and the product with scale.
          score_err[s] = std::fabs(scale) * mag * (d.head_dim / 8.0 + 5) * kU32;
          m = std::max(m, score[s]);
          max_err = std::max(max_err, score_err[s]);
        }
        double sum = 0;
        for (int64_t s = 0; s <= t; ++s) sum += std::exp(score[s] - m);
        const size_t lse_i = (b * d.heads + h) * d.seq + t;
        r.lse[lse_i] = m + std::log(sum);
        // fp32 lse: the scores' error, the sum of t+1 exps in 8 lanes, the log and the add.
        r.lse_bound[lse_i] = max_err + ((t + 1) / 8.0 + 6) * kU32 + 2 * kU32 * std::fabs(r.lse[lse_i]);
        for (int64_t i = 0; i < d.head_dim; ++i) {
          double o = 0, weighted = 0;
          for (int64_t s = 0; s <= t; ++s) {
            const double p = std::exp(score[s] - m) / sum;
            o += p * v[d.at(b, s, h) + i];
            weighted += p * std::fabs(v[d.at(b, s, h) + i]);
          }
          r.out[d.at(b, t, h) + i] = o;
          // fp32 out: each probability is off by ~ 2 max_err (its score and the max) plus the
          // rounding of exp, the rescales and the sum, ~(t/8 + seq/64 + 8) u; the running sum of
          // t+1 terms p v adds gamma_{t+2}; all relative to sum_s p_s |v_s|. Twice that, for margin.
          r.out_bound[d.at(b, t, h) + i] =
              2 * (2 * max_err + ((t + 1) * 1.125 + d.seq / 64.0 + 10) * kU32) * weighted + 1e-30;
        }
      }
    }
  }
  return r;
}

class OpsAttention : public OpsTest {
 protected:
  // Keys that grow along the sequence make later key blocks hold larger scores, so the
  // online softmax has to rescale what it accumulated.
  std::vector<double> growing_keys(const Dims& d) {
    std::vector<double> k = uniform(d.numel());
    for (int64_t b = 0; b < d.batch; ++b)
      for (int64_t s = 0; s < d.seq; ++s)
        for (int64_t h = 0; h < d.heads; ++h)
          for (int64_t i = 0; i < d.head_dim; ++i) k[d.at(b, s, h) + i] *= 1.0 + 0.05 * s;
    return k;
  }
};

TEST_F(OpsAttention, ForwardMatchesFullSoftmaxReference) {
  struct Case {
    Dims d;
    double scale;
    bool growing;
  };
  for (const Case& c : {Case{{1, 1, 1, 8}, 0.12, false}, Case{{2, 7, 2, 8}, 0.12, false},
                        Case{{2, 5, 3, 6}, 0.5, false}, Case{{1, 70, 1, 12}, 2.0, true},
                        Case{{1, 130, 2, 16}, 1.0, true}, Case{{1, 33, 1, 128}, 0.12, false}}) {
    const Dims& d = c.d;
    const std::vector<double> q = float_representable(uniform(d.numel()));
    const std::vector<double> k = float_representable(c.growing ? growing_keys(d) : uniform(d.numel()));
    const std::vector<double> v = float_representable(uniform(d.numel()));
    const Reference want = reference_attention(d, q, k, v, c.scale);
    const std::string what = d.str() + " scale " + std::to_string(c.scale);
    auto shape = [&](auto& buf) { return view(buf, {d.batch, d.seq, d.heads, d.head_dim}); };

    std::vector<double> q64 = q, k64 = k, v64 = v, out64(d.numel()), lse64(d.batch * d.heads * d.seq);
    ops::attention_forward(shape(out64), view(lse64, {d.batch, d.heads, d.seq}), shape(q64), shape(k64), shape(v64),
                           c.scale);
    expect_near_rel("f64 out " + what, out64, want.out, 1e-13);
    expect_near_rel("f64 lse " + what, lse64, want.lse, 1e-13);

    std::vector<float> q32 = cast<float>(q), k32 = cast<float>(k), v32 = cast<float>(v), out32(d.numel()),
                       lse32(d.batch * d.heads * d.seq);
    ops::attention_forward(shape(out32), view(lse32, {d.batch, d.heads, d.seq}), shape(q32), shape(k32), shape(v32),
                           c.scale);
    expect_within("f32 out " + what, out32, want.out, [&](size_t i) { return want.out_bound[i]; });
    expect_within("f32 lse " + what, lse32, want.lse, [&](size_t i) { return want.lse_bound[i]; });
  }
}

TEST_F(OpsAttention, BackwardMatchesFiniteDifferences) {
  struct Case {
    Dims d;
    double scale;
  };
  for (const Case& c : {Case{{2, 7, 2, 8}, 0.12}, Case{{1, 9, 1, 5}, 0.5}, Case{{1, 70, 1, 4}, 1.0},
                        Case{{2, 3, 3, 6}, 2.0}}) {
    const Dims& d = c.d;
    auto shape = [&](auto& buf) { return view(buf, {d.batch, d.seq, d.heads, d.head_dim}); };
    std::vector<double> q = uniform(d.numel()), k = uniform(d.numel()), v = uniform(d.numel());
    std::vector<double> r = uniform(d.numel()), out(d.numel()), lse(d.batch * d.heads * d.seq);
    auto objective = [&] {
      ops::attention_forward(shape(out), view(lse, {d.batch, d.heads, d.seq}), shape(q), shape(k), shape(v),
                             c.scale);
      return weighted_sum(r, out);
    };
    objective();
    std::vector<double> dq(d.numel()), dk(d.numel()), dv(d.numel());
    ops::attention_backward(shape(dq), shape(dk), shape(dv), shape(r), shape(q), shape(k), shape(v), shape(out),
                            view(lse, {d.batch, d.heads, d.seq}), c.scale);
    const std::string what = d.str() + " scale " + std::to_string(c.scale);
    expect_gradient("dq " + what, q, dq, objective);
    expect_gradient("dk " + what, k, dk, objective);
    expect_gradient("dv " + what, v, dv, objective);
  }
}

// One position: out = v, so dv = dout and dq = dk = 0 exactly.
TEST_F(OpsAttention, SinglePosition) {
  const Dims d{2, 1, 3, 8};
  auto shape = [&](auto& buf) { return view(buf, {d.batch, d.seq, d.heads, d.head_dim}); };
  std::vector<double> q = uniform(d.numel()), k = uniform(d.numel()), v = uniform(d.numel()), dout = uniform(d.numel());
  std::vector<double> out(d.numel()), lse(d.batch * d.heads), dq(d.numel(), 1.0), dk(d.numel(), 1.0), dv(d.numel());
  ops::attention_forward(shape(out), view(lse, {d.batch, d.heads, 1}), shape(q), shape(k), shape(v), 0.12);
  expect_near_rel("out", out, v, 1e-15);
  ops::attention_backward(shape(dq), shape(dk), shape(dv), shape(dout), shape(q), shape(k), shape(v), shape(out),
                          view(lse, {d.batch, d.heads, 1}), 0.12);
  expect_near_rel("dv", dv, dout, 1e-15);
  for (size_t i = 0; i < dq.size(); ++i) {
    ASSERT_LE(std::fabs(dq[i]), 1e-15) << i;
    ASSERT_LE(std::fabs(dk[i]), 1e-15) << i;
  }
}

TEST_F(OpsAttention, IsThreadCountDeterministic) {
  const Dims d{2, 150, 3, 32};
  auto shape = [&](auto& buf) { return view(buf, {d.batch, d.seq, d.heads, d.head_dim}); };
  const std::vector<float> q = cast<float>(uniform(d.numel())), k = cast<float>(growing_keys(d)),
                           v = cast<float>(uniform(d.numel())), dout = cast<float>(uniform(d.numel()));
  struct Result {
    std::vector<float> out, lse, dq, dk, dv;
  };
  auto run = [&](int threads) {
    Result r{std::vector<float>(d.numel()), std::vector<float>(d.batch * d.heads * d.seq),
             std::vector<float>(d.numel()), std::vector<float>(d.numel()), std::vector<float>(d.numel())};
    std::vector<float> qc = q, kc = k, vc = v, dc = dout;
    with_threads(threads, [&] {
      ops::attention_forward(shape(r.out), view(r.lse, {d.batch, d.heads, d.seq}), shape(qc), shape(kc), shape(vc),
                             0.12);
      ops::attention_backward(shape(r.dq), shape(r.dk), shape(r.dv), shape(dc), shape(qc), shape(kc), shape(vc),
                              shape(r.out), view(r.lse, {d.batch, d.heads, d.seq}), 0.12);
    });
    return r;
  };
  const Result one = run(1), three = run(3);
  expect_bitwise_equal("out", one.out, three.out);
  expect_bitwise_equal("lse", one.lse, three.lse);
  expect_bitwise_equal("dq", one.dq, three.dq);
  expect_bitwise_equal("dk", one.dk, three.dk);
  expect_bitwise_equal("dv", one.dv, three.dv);
}

TEST_F(OpsAttention, RejectsBadArguments) {
  std::vector<float> a(2 * 3 * 4 * 8), b(a.size()), c(a.size()), o(a.size()), lse(2 * 4 * 3);
  std::vector<double> a64(a.size());
  const Tensor q = view(a, {2, 3, 4, 8}), k = view(b, {2, 3, 4, 8}), v = view(c, {2, 3, 4, 8}),
               out = view(o, {2, 3, 4, 8});
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(out, view(lse, {2, 3, 4}), q, k, v, 0.12), "attention_forward",
                          "lse", "(2, 3, 4)", "(2, 4, 3)");
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(out, view(lse, {2, 4, 3}), q, view(b, {2, 3, 8, 4}), v, 0.12),
                          "attention_forward", "k");
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(out, view(lse, {2, 4, 3}), view(a64, {2, 3, 4, 8}), k, v, 0.12),
                          "attention_forward", "k", "f64");
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(out, view(lse, {2, 4, 3}), view(a, {6, 4, 8}), k, v, 0.12),
                          "attention_forward", "q", "dimensions");
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(out, view(lse, {2, 4, 3}), q, k, v, INFINITY), "attention_forward",
                          "scale");
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(out, view(lse, {2, 4, 3}), q, k, on_cuda(v), 0.12),
                          "attention_forward", "cuda");
  EXPECT_INVALID_ARGUMENT(ops::attention_backward(out, out, Tensor(), out, q, k, v, out, view(lse, {2, 4, 3}), 0.12),
                          "attention_backward", "dv", "missing");
  EXPECT_INVALID_ARGUMENT(ops::attention_backward(out, out, out, view(o, {2, 3, 2, 16}), q, k, v, out,
                                                  view(lse, {2, 4, 3}), 0.12),
                          "attention_backward", "dout");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::attention_forward(on_cuda(out), on_cuda(view(lse, {2, 4, 3})), on_cuda(q),
                                                     on_cuda(k), on_cuda(v), 0.12),
                              "attention_forward");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::attention_backward(on_cuda(out), on_cuda(out), on_cuda(out), on_cuda(out),
                                                      on_cuda(q), on_cuda(k), on_cuda(v), on_cuda(out),
                                                      on_cuda(view(lse, {2, 4, 3})), 0.12),
                              "attention_backward");
}

// attention_decode: the queries of the last n of S positions against all S keys give the
// same bits as those rows of the full causal forward (the same arithmetic per query), for
// every split of S into a prefill and decode steps, across a key block boundary (64).
// Negative control: the same queries taken one position early differ.
TEST_F(OpsAttention, DecodeEqualsForwardRows) {
  const Dims d{2, 70, 3, 16};
  auto shape = [&](auto& buf, int64_t seq) { return view(buf, {d.batch, seq, d.heads, d.head_dim}); };
  const std::vector<float> q = cast<float>(uniform(d.numel())), k = cast<float>(uniform(d.numel(), -2, 2)),
                           v = cast<float>(uniform(d.numel()));
  std::vector<float> full(d.numel()), lse(d.batch * d.heads * d.seq);
  ops::attention_forward(shape(full, d.seq), view(lse, {d.batch, d.heads, d.seq}), shape(q, d.seq), shape(k, d.seq),
                         shape(v, d.seq), 0.12);
  // (B, S, H, D) prefix of a (B, T, H, D) tensor: copies positions [from, to) of every batch row.
  auto positions = [&](const std::vector<float>& x, int64_t from, int64_t to) {
    std::vector<float> out;
    for (int64_t b = 0; b < d.batch; ++b)
      out.insert(out.end(), x.begin() + d.at(b, from, 0), x.begin() + d.at(b, to, 0));
    return out;
  };
  for (const auto& [S, n] : Shapes<2>{{1, 1}, {5, 1}, {64, 1}, {65, 1}, {70, 1}, {70, 6}, {70, 70}, {66, 3}}) {
    SCOPED_TRACE("S = " + std::to_string(S) + ", n = " + std::to_string(n));
    const std::vector<float> qn = positions(q, S - n, S), ks = positions(k, 0, S), vs = positions(v, 0, S);
    std::vector<float> out(qn.size());
    ops::attention_decode(shape(out, n), shape(qn, n), shape(ks, S), shape(vs, S), 0.12);
    expect_bitwise_equal("out", out, positions(full, S - n, S));
    if (S - n >= 1) {  // the same queries placed one position early see one key fewer
      const std::vector<float> early = positions(full, S - n - 1, S - 1);
      EXPECT_NE(0, std::memcmp(out.data(), early.data(), out.size() * sizeof(float)));
      std::vector<float> shifted(qn.size());
      ops::attention_decode(shape(shifted, n), shape(qn, n), shape(ks, S - 1), shape(vs, S - 1), 0.12);
      EXPECT_NE(0, std::memcmp(out.data(), shifted.data(), out.size() * sizeof(float)));
    }
  }
  std::vector<float> o(2 * 3 * 4 * 8);
  EXPECT_INVALID_ARGUMENT(ops::attention_decode(view(o, {2, 3, 4, 8}), view(q, {2, 3, 4, 8}), view(k, {2, 2, 4, 8}),
                                                view(v, {2, 2, 4, 8}), 0.12),
                          "attention_decode", "k", "S >= 3");
  EXPECT_INVALID_ARGUMENT(ops::attention_decode(view(o, {2, 3, 4, 8}), view(q, {2, 3, 4, 8}), view(k, {2, 5, 4, 8}),
                                                view(v, {2, 4, 4, 8}), 0.12),
                          "attention_decode", "v");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::attention_decode(on_cuda(view(o, {2, 3, 4, 8})), on_cuda(view(q, {2, 3, 4, 8})),
                                                    on_cuda(view(k, {2, 5, 4, 8})), on_cuda(view(v, {2, 5, 4, 8})),
                                                    0.12),
                              "attention_decode");
}

}  // namespace
}  // namespace speedrun::test

// ---- CUDA against the CPU (cuda_op_case.h) -------------------------------------------------
namespace speedrun::test {
namespace {

// Picks the kernels bf16 attention runs on for one scope (cuda::set_attention_kernel),
// restoring the previous choice on exit.
struct AttentionKernelScope {
  cuda::AttentionKernel previous;
  explicit AttentionKernelScope(cuda::AttentionKernel k) : previous(cuda::set_attention_kernel(k)) {}
  ~AttentionKernelScope() { cuda::set_attention_kernel(previous); }
  AttentionKernelScope(const AttentionKernelScope&) = delete;
  AttentionKernelScope& operator=(const AttentionKernelScope&) = delete;
};

// f32 runs on the CUDA-core kernels (attention.cu); bf16 on all three: the tensor-core
// kernels (attention_tc.cu, the default), the CUDA-core ones (SPEEDRUN_ATTENTION=simt) and the
// FlashAttention-2-class ones (attention_flash.cu, SPEEDRUN_ATTENTION=flash: forward query
// tiles of 128, backward key tiles of 128, so every shape below but T = 130 and 200 is a
// single partial tile, and those two cross a tile edge off the tile multiple). The flash dq is
// summed by fp32 atomics in another order than the CPU's: the same bf16 tolerance holds, its
// one rounding to bf16 dominating.
CUDA_OP_CASE(AttentionMatchesCpu) {
  struct Variant {
    DType t;
    cuda::AttentionKernel kernel;
    const char* name;
  };
  // With SPEEDRUN_ATTENTION set (scripts/cuda_check.sh's runs of one kernel, under the
  // sanitizers too), only the bf16 variant it names runs; unset, all four.
  const char* env = std::getenv("SPEEDRUN_ATTENTION");
  const std::string only = env ? env : "";
  for (const Variant& variant : {Variant{DType::f32, cuda::AttentionKernel::simt, "simt"},
                                 Variant{DType::bf16, cuda::AttentionKernel::tensor_core, "tc"},
                                 Variant{DType::bf16, cuda::AttentionKernel::simt, "simt"},
                                 Variant{DType::bf16, cuda::AttentionKernel::flash, "flash"}}) {
    if (!only.empty() && (variant.t != DType::bf16 || only != variant.name)) continue;
    const AttentionKernelScope scope(variant.kernel);
    for_each_case<4>({variant.t}, {{1, 1, 1, 64}, {2, 37, 3, 64}, {1, 64, 2, 128}, {2, 130, 2, 128}, {1, 200, 1, 64}},
                     [&](DType t, std::array<int64_t, 4> shape) {
      const auto [B, T, H, D] = shape;
      const double scale = 0.12;
      // QK-normed, rotated inputs have unit-RMS rows: scores of a few units, like the model's.
      input("q", t, {B, T, H, D}, -1.7, 1.7);
      input("k", t, {B, T, H, D}, -1.7, 1.7);
      input("v", t, {B, T, H, D});
      output("out", t, {B, T, H, D});
      output("lse", DType::f32, {B, H, T});
      run([&](const Side& s) { ops::attention_forward(s["out"], s["lse"], s["q"], s["k"], s["v"], scale); });
      expect_near("out", t == DType::f32 ? kF32SumTol : kBf16One);
      expect_near("lse", kF32SumTol);

      // Backward from the same (rounded) out and lse on both sides.
      from_cpu("o", "out", t);
      from_cpu("lse_ref", "lse", DType::f32);
      input("g", t, {B, T, H, D});
      output("gq", t, {B, T, H, D});
      output("gk", t, {B, T, H, D});
      output("gv", t, {B, T, H, D});
      run([&](const Side& s) {
        ops::attention_backward(s["gq"], s["gk"], s["gv"], s["g"], s["q"], s["k"], s["v"], s["o"], s["lse_ref"],
                                scale);
      });
      const double tol = t == DType::f32 ? kF32SumTol : kBf16Two;
      // dq, dk are sums of scale * P (dout.v - delta) * k: with one key (T = 1) exactly zero,
      // the two dot products cancelling; their terms are up to scale * D max|g| max|v| max|k|.
      const double term =
          T == 1 ? scale * static_cast<double>(D) * max_abs(cpu("g")) * max_abs(cpu("v")) * max_abs(cpu("k")) : 0.0;
      expect_near("gq", tol, term);
      expect_near("gk", tol, term);
      expect_near("gv", tol);
    }, variant.name);
  }
}

// The flash kernels are chosen only for bf16 with every pointer 16-byte aligned; an
// unaligned pointer falls back (to the CUDA-core kernels) instead of reaching cp.async.
// Host arithmetic on pointer values: runs in a CUDA build without a device.
#if SPEEDRUN_HAVE_CUDA
TEST(CudaAttentionDispatch, FlashOnlyForAlignedBf16) {
  alignas(16) static char buffer[64];
  const void* aligned = buffer;
  const void* odd = buffer + 2;  // a bf16 element further: aligned to 2, not 16
  const AttentionKernelScope flash(cuda::AttentionKernel::flash);
  EXPECT_TRUE(cuda::use_flash_attention(DType::bf16, {aligned, buffer + 16, buffer + 48}));
  EXPECT_FALSE(cuda::use_flash_attention(DType::bf16, {aligned, odd}));
  EXPECT_FALSE(cuda::use_flash_attention(DType::f32, {aligned}));
  EXPECT_FALSE(cuda::use_tensor_core_attention(DType::bf16, {aligned}));  // flash, not tc, was chosen
  {
    const AttentionKernelScope tc(cuda::AttentionKernel::tensor_core);
    EXPECT_FALSE(cuda::use_flash_attention(DType::bf16, {aligned}));
    EXPECT_TRUE(cuda::use_tensor_core_attention(DType::bf16, {aligned}));  // negative control: the scope works
  }
  EXPECT_EQ(cuda::attention_kernel(), cuda::AttentionKernel::flash);
}
#endif

CUDA_OP_CASE(RefusesWhatItDoesNotSupport) {
  std::vector<float> x(2 * 3 * 1 * 32);
  Dev d(x, DType::f32), l(std::vector<float>(2 * 3), DType::f32);
  const Tensor q = d.t({2, 3, 1, 32});
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(q, l.t({2, 1, 3}), q, q, q, 0.12), "head_dim 64 and 128");
  Dev lb(std::vector<float>(2 * 3), DType::bf16);
  Dev xb(x, DType::bf16);
  const Tensor qb = xb.t({2, 3, 1, 32});
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(qb, lb.t({2, 1, 3}), qb, qb, qb, 0.12), "lse", "expected f32");
}

}  // namespace
}  // namespace speedrun::test
