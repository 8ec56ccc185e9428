// ops::softcap_forward, ops::softcap_cross_entropy and ops::sum_losses.
#include "cuda_op_case.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

constexpr double kU32 = 0x1p-24;

using Kind = ops::SoftCap::Kind;

ops::SoftCap algebraic15() { return {Kind::algebraic, 15.0, 1.0}; }
ops::SoftCap sigmoid30(double denominator) { return {Kind::sigmoid, 30.0, denominator}; }
ops::SoftCap no_cap() { return {Kind::none, 0.0, 1.0}; }
const double kRecord26Denominator = 7.5 * std::sqrt(768.0);

std::string name(const ops::SoftCap& cap) {
  switch (cap.kind) {
    case Kind::none: return "none";
    case Kind::algebraic: return "algebraic " + std::to_string(cap.cap);
    case Kind::sigmoid: return "sigmoid " + std::to_string(cap.cap) + "/" + std::to_string(cap.denominator);
  }
  return "?";
}

// The caps and their derivatives, in double, straight from the spec.
double cap_value(const ops::SoftCap& cap, double z) {
  switch (cap.kind) {
    case Kind::none: return z;
    case Kind::algebraic: return cap.cap * z / std::sqrt(z * z + cap.cap * cap.cap);
    case Kind::sigmoid: return cap.cap / (1.0 + std::exp(-z / cap.denominator));
  }
  return 0;
}
double cap_slope(const ops::SoftCap& cap, double z) {
  switch (cap.kind) {
    case Kind::none: return 1.0;
    case Kind::algebraic: return std::pow(cap.cap, 3) / std::pow(z * z + cap.cap * cap.cap, 1.5);
    case Kind::sigmoid: {
      // sigmoid(u) (1 - sigmoid(u)) = e / (1 + e)^2 with e = exp(-|u|): no cancellation in 1 - sigmoid.
      const double e = std::exp(-std::fabs(z / cap.denominator));
      return cap.cap / cap.denominator * e / ((1 + e) * (1 + e));
    }
  }
  return 0;
}
// Relative error of an evaluation of the cap with unit roundoff u (a handful of roundings;
// the sigmoid's exp(-|z|/den) turns the u of z/den into |z|/den u).
double cap_rel_error(const ops::SoftCap& cap, double z, double u = kU32) {
  return cap.kind == Kind::sigmoid ? (8 + std::fabs(z) / cap.denominator) * u : 8 * u;
}
// The f64 op is checked with the same error model as the fp32 one, with u = 2^-50: the f64
// unit roundoff 2^-53 with a factor 8 for the reference's own rounding.
constexpr double kU64Checked = 0x1p-50;

// Per row: loss = logsumexp(s) - s_target, p = softmax(s), in double. For an op with unit
// roundoff u, a bound on the loss error: the logits' errors (the loss moves by at most
// 2 max|ds|), the sum of V exps in 8 lanes (gamma_{V/8+3}, absolute on the log) and the last
// roundings.
struct Reference {
  std::vector<double> losses, probs, loss_bound, dz;
  std::vector<double> dz_bound;
};
Reference reference_ce(const std::vector<double>& z, const std::vector<int32_t>& targets, int64_t rows, int64_t vocab,
                       const ops::SoftCap& cap, double grad_scale, double u) {
  Reference r{std::vector<double>(rows), std::vector<double>(rows * vocab), std::vector<double>(rows),
              std::vector<double>(rows * vocab), std::vector<double>(rows * vocab)};
  for (int64_t n = 0; n < rows; ++n) {
    std::vector<double> s(vocab);
    double m = -INFINITY, max_err = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      const double zv = z[n * vocab + v];
      s[v] = cap_value(cap, zv);
      m = std::max(m, s[v]);
      max_err = std::max(max_err, cap_rel_error(cap, zv, u) * std::fabs(s[v]));
    }
    double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(s[v] - m);
    r.losses[n] = m + std::log(sum) - s[targets[n]];
    const double sum_err = (vocab / 8.0 + 6) * u;
    r.loss_bound[n] = 2 * max_err + sum_err + 2 * u * (std::fabs(m - s[targets[n]]) + std::log(sum)) + 1e-30;
    for (int64_t v = 0; v < vocab; ++v) {
      const size_t i = n * vocab + v;
      const double p = std::exp(s[v] - m) / sum, onehot = v == targets[n] ? 1.0 : 0.0;
      const double slope = cap_slope(cap, z[i]);
      r.probs[i] = p;
      r.dz[i] = grad_scale * (p - onehot) * slope;
      // dz: p off by (2 max_err + sum_err + a few u) relative, the slope by ~10u (more for
      // the sigmoid: see cap_rel_error), the products by 3u.
      r.dz_bound[i] = std::fabs(grad_scale * slope) *
                          (p * (2 * max_err + sum_err + 6 * u) +
                           std::fabs(p - onehot) * (10 * u + 2 * cap_rel_error(cap, z[i], u))) +
                      1e-300;
    }
  }
  return r;
}

class OpsCrossEntropy : public OpsTest {};

TEST_F(OpsCrossEntropy, SoftcapForwardMatchesFormulas) {
  for (const ops::SoftCap& cap : {algebraic15(), sigmoid30(kRecord26Denominator), sigmoid30(1.0), no_cap()}) {
    const int64_t n = 2000;
    // Wide logits: deep into both saturations; sigmoid30(1.0) reaches |z/den| = 200 (no overflow).
    const std::vector<double> z = float_representable(uniform(n, -200.0, 200.0));
    std::vector<double> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = cap_value(cap, z[i]);
    std::vector<double> z64 = z, out64(n);
    ops::softcap_forward(view(out64, {n}), view(z64, {n}), cap);
    expect_near_rel("f64 " + name(cap), out64, want, 1e-14);
    std::vector<float> z32 = cast<float>(z), out32(n);
    ops::softcap_forward(view(out32, {4, n / 4}), view(z32, {4, n / 4}), cap);
    expect_within("f32 " + name(cap), out32, want,
                  [&](size_t i) { return cap_rel_error(cap, z[i]) * std::fabs(want[i]) + 1e-30; });
  }
}

TEST_F(OpsCrossEntropy, LossesAndGradientMatchReference) {
  for (const ops::SoftCap& cap : {algebraic15(), sigmoid30(kRecord26Denominator), sigmoid30(2.0), no_cap()}) {
    for (auto [rows, vocab] : Shapes<2>{{1, 2}, {3, 37}, {5, 64}, {4, 129}, {2, 50304}}) {
      const double zmax = cap.kind == Kind::none ? 8.0 : 40.0;
      const std::vector<double> z = float_representable(uniform(rows * vocab, -zmax, zmax));
      const std::vector<int32_t> targets = indices(rows, static_cast<int32_t>(vocab));
      const double grad_scale = uniform(1, 0.5, 2.0)[0];
      const Reference want = reference_ce(z, targets, rows, vocab, cap, grad_scale, kU32);
      const Reference want64 = reference_ce(z, targets, rows, vocab, cap, grad_scale, kU64Checked);
      const std::string what = name(cap) + " " + std::to_string(rows) + "x" + std::to_string(vocab);
      std::vector<int32_t> tc = targets;

      std::vector<double> z64 = z, losses64(rows), dz64(z.size());
      ops::softcap_cross_entropy(view(losses64, {rows}), view(dz64, {rows, vocab}), view(z64, {rows, vocab}),
                                 view(tc, {rows}), cap, grad_scale);
      expect_within("f64 losses " + what, losses64, want64.losses, [&](size_t i) { return want64.loss_bound[i]; });
      expect_within("f64 dz " + what, dz64, want64.dz, [&](size_t i) { return want64.dz_bound[i]; });

      std::vector<float> z32 = cast<float>(z), losses32(rows), dz32(z.size());
      ops::softcap_cross_entropy(view(losses32, {rows}), view(dz32, {rows, vocab}), view(z32, {rows, vocab}),
                                 view(tc, {rows}), cap, grad_scale);
      expect_within("f32 losses " + what, losses32, want.losses, [&](size_t i) { return want.loss_bound[i]; });
      expect_within("f32 dz " + what, dz32, want.dz, [&](size_t i) { return want.dz_bound[i]; });
    }
  }
}

// dz = grad_scale * d(sum_n losses_n)/dz, through the soft cap.
// A loss is computed as (m - s_target) + log(sum), whose rounding, 1.1e-16 (|m - s_target| +
// log V) <= 1.1e-16 * 70 for these caps, is amplified by 1/(2h) in a central difference: up
// to ~4e-9 per row, hence an absolute allowance of 1e-8 on top of the relative 1e-6. The
// logits span each cap's curved range (|z| up to 2c, or 3 temperatures for the sigmoid), where
// s' varies and the gradients are ~1e-3 .. 1, far above that allowance.
TEST_F(OpsCrossEntropy, GradientMatchesFiniteDifferences) {
  for (const ops::SoftCap& cap : {algebraic15(), sigmoid30(kRecord26Denominator), sigmoid30(3.0), no_cap()}) {
    const double zmax = cap.kind == Kind::algebraic ? 2 * cap.cap
                        : cap.kind == Kind::sigmoid ? 3 * cap.denominator
                                                    : 4.0;
    for (auto [rows, vocab] : Shapes<2>{{2, 2}, {3, 37}, {2, 64}, {4, 9}}) {
      std::vector<double> z = uniform(rows * vocab, -zmax, zmax);
      std::vector<int32_t> targets = indices(rows, static_cast<int32_t>(vocab));
      const double grad_scale = uniform(1, 0.5, 2.0)[0];
      std::vector<double> losses(rows), weights(rows, grad_scale);
      auto objective = [&] {
        ops::softcap_cross_entropy(view(losses, {rows}), Tensor(), view(z, {rows, vocab}), view(targets, {rows}), cap,
                                   grad_scale);
        return weighted_sum(weights, losses);
      };
      std::vector<double> dz(z.size());
      ops::softcap_cross_entropy(view(losses, {rows}), view(dz, {rows, vocab}), view(z, {rows, vocab}),
                                 view(targets, {rows}), cap, grad_scale);
      expect_gradient("dz " + name(cap) + " " + std::to_string(rows) + "x" + std::to_string(vocab), z, dz, objective,
                      kFdTolerance, 1e-8);
    }
  }
}

TEST_F(OpsCrossEntropy, AliasingEmptyGradientAndOneClass) {
  const int64_t rows = 6, vocab = 300;
  const std::vector<float> z = cast<float>(uniform(rows * vocab, -30.0, 30.0));
  std::vector<int32_t> targets = indices(rows, vocab);
  std::vector<float> zc = z, losses(rows), dz(z.size());
  ops::softcap_cross_entropy(view(losses, {rows}), view(dz, {rows, vocab}), view(zc, {rows, vocab}),
                             view(targets, {rows}), algebraic15(), 1.0);
  // Declared: dz may alias z.
  std::vector<float> in_place = z, losses2(rows);
  ops::softcap_cross_entropy(view(losses2, {rows}), view(in_place, {rows, vocab}), view(in_place, {rows, vocab}),
                             view(targets, {rows}), algebraic15(), 1.0);
  expect_bitwise_equal("dz aliasing z", in_place, dz);
  expect_bitwise_equal("losses with dz aliasing z", losses2, losses);
  // Evaluation: losses only, the same values.
  std::vector<float> losses3(rows);
  ops::softcap_cross_entropy(view(losses3, {rows}), Tensor(), view(zc, {rows, vocab}), view(targets, {rows}),
                             algebraic15(), 1.0);
  expect_bitwise_equal("losses without dz", losses3, losses);
  // One class: the loss is 0 and so is its gradient.
  std::vector<float> one = {3.0f}, loss1(1), dz1(1);
  std::vector<int32_t> zero = {0};
  ops::softcap_cross_entropy(view(loss1, {1}), view(dz1, {1, 1}), view(one, {1, 1}), view(zero, {1}), algebraic15(),
                             1.0);
  EXPECT_EQ(loss1[0], 0.0f);
  EXPECT_EQ(dz1[0], 0.0f);
}

// Upstream's step 0: the LM head is zero-initialised, every logit is 0 and the loss of each
// token is ln(50304) ~ 10.82584 (upstream logs 10.82584). The gradient is (1/V - onehot) s'(0)
// with s'(0) = 1 for the algebraic cap.
TEST_F(OpsCrossEntropy, ZeroLogitsGiveLogVocab) {
  const int64_t rows = 3, vocab = 50304;
  std::vector<float> z(rows * vocab, 0.0f), losses(rows), dz(z.size());
  std::vector<int32_t> targets = indices(rows, 50257);
  ops::softcap_cross_entropy(view(losses, {rows}), view(dz, {rows, vocab}), view(z, {rows, vocab}),
                             view(targets, {rows}), algebraic15(), 1.0);
  for (int64_t n = 0; n < rows; ++n) {
    EXPECT_NEAR(losses[n], std::log(50304.0), 2e-6);
    EXPECT_NEAR(dz[n * vocab + (targets[n] + 1) % vocab], 1.0 / vocab, 1e-10);
    EXPECT_NEAR(dz[n * vocab + targets[n]], 1.0 / vocab - 1.0, 1e-6);
  }
}

TEST_F(OpsCrossEntropy, IsThreadCountDeterministic) {
  const int64_t rows = 64, vocab = 1000;
  const std::vector<float> z = cast<float>(uniform(rows * vocab, -30.0, 30.0));
  std::vector<int32_t> targets = indices(rows, vocab);
  auto run = [&](int threads, std::vector<float>& losses, std::vector<float>& dz) {
    std::vector<float> zc = z;
    with_threads(threads, [&] {
      ops::softcap_cross_entropy(view(losses, {rows}), view(dz, {rows, vocab}), view(zc, {rows, vocab}),
                                 view(targets, {rows}), sigmoid30(kRecord26Denominator), 0.5);
    });
  };
  std::vector<float> l1(rows), l3(rows), d1(z.size()), d3(z.size());
  run(1, l1, d1);
  run(3, l3, d3);
  expect_bitwise_equal("losses", l1, l3);
  expect_bitwise_equal("dz", d1, d3);
}

TEST_F(OpsCrossEntropy, SumLossesIsAnOrderedDoubleSum) {
  std::vector<float> losses = cast<float>(uniform(1001, 0.0, 12.0));
  double want = 0;
  for (float l : losses) want += static_cast<double>(l);
  EXPECT_EQ(ops::sum_losses(view(losses, {1001})), want);
  std::vector<double> losses64 = uniform(17, 0.0, 12.0);
  double want64 = 0;
  for (double l : losses64) want64 += l;
  EXPECT_EQ(ops::sum_losses(view(losses64, {17})), want64);
  std::vector<int32_t> ints(3);
  EXPECT_INVALID_ARGUMENT(ops::sum_losses(view(ints, {3})), "sum_losses", "i32");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::sum_losses(on_cuda(view(losses, {1001}))), "sum_losses");
}

TEST_F(OpsCrossEntropy, RejectsBadArguments) {
  std::vector<float> z(4 * 10), dz(4 * 10), losses(4), small(3);
  std::vector<double> losses64(4);
  std::vector<int32_t> targets = {0, 9, 3, 3}, too_big = {0, 10, 3, 3}, negative = {0, -1, 3, 3};
  std::vector<float> float_targets(4);
  const Tensor z2 = view(z, {4, 10});
  EXPECT_INVALID_ARGUMENT(
      ops::softcap_cross_entropy(view(losses, {4}), Tensor(), z2, view(too_big, {4}), algebraic15(), 1.0),
      "softcap_cross_entropy", "targets[1] = 10");
  EXPECT_INVALID_ARGUMENT(
      ops::softcap_cross_entropy(view(losses, {4}), Tensor(), z2, view(negative, {4}), algebraic15(), 1.0),
      "softcap_cross_entropy", "targets[1] = -1");
  EXPECT_INVALID_ARGUMENT(
      ops::softcap_cross_entropy(view(small, {3}), Tensor(), z2, view(targets, {4}), algebraic15(), 1.0),
      "softcap_cross_entropy", "losses", "(3)");
  EXPECT_INVALID_ARGUMENT(
      ops::softcap_cross_entropy(view(losses64, {4}), Tensor(), z2, view(targets, {4}), algebraic15(), 1.0),
      "softcap_cross_entropy", "losses", "f64");
  EXPECT_INVALID_ARGUMENT(
      ops::softcap_cross_entropy(view(losses, {4}), Tensor(), z2, view(float_targets, {4}), algebraic15(), 1.0),
      "softcap_cross_entropy", "targets", "f32");
  EXPECT_INVALID_ARGUMENT(
      ops::softcap_cross_entropy(view(losses, {4}), view(dz, {10, 4}), z2, view(targets, {4}), algebraic15(), 1.0),
      "softcap_cross_entropy", "dz", "(10, 4)");
  EXPECT_INVALID_ARGUMENT(ops::softcap_cross_entropy(view(losses, {4}), Tensor(), z2, view(targets, {4}),
                                                     ops::SoftCap{Kind::algebraic, 0.0, 1.0}, 1.0),
                          "softcap_cross_entropy", "cap");
  EXPECT_INVALID_ARGUMENT(ops::softcap_cross_entropy(view(losses, {4}), Tensor(), z2, view(targets, {4}),
                                                     ops::SoftCap{Kind::sigmoid, 30.0, 0.0}, 1.0),
                          "softcap_cross_entropy", "denominator");
  EXPECT_INVALID_ARGUMENT(
      ops::softcap_cross_entropy(view(losses, {4}), Tensor(), z2, view(targets, {4}), algebraic15(), NAN),
      "softcap_cross_entropy", "grad_scale");
  EXPECT_INVALID_ARGUMENT(
      ops::softcap_cross_entropy(view(losses, {4}), Tensor(), z2, on_cuda(view(targets, {4})), algebraic15(), 1.0),
      "softcap_cross_entropy", "cuda");
  EXPECT_INVALID_ARGUMENT(ops::softcap_forward(view(dz, {5, 8}), z2, algebraic15()), "softcap_forward", "out");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::softcap_cross_entropy(on_cuda(view(losses, {4})), Tensor(), on_cuda(z2),
                                                         on_cuda(view(targets, {4})), algebraic15(), 1.0),
                              "softcap_cross_entropy");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::softcap_forward(on_cuda(view(dz, {4, 10})), on_cuda(z2), algebraic15()),
                              "softcap_forward");
}

}  // namespace
}  // namespace speedrun::test

// ---- CUDA against the CPU (cuda_op_case.h): the soft cap and the loss ---------------------------
namespace speedrun::test {
namespace {

CUDA_OP_CASE(SoftcapCrossEntropyMatchesCpu) {
  using Kind = ops::SoftCap::Kind;
  const ops::SoftCap caps[] = {{Kind::algebraic, 15.0, 1.0}, {Kind::sigmoid, 30.0, 7.5 * 27.7128}, {Kind::none, 0.0, 1.0}};
  for (const ops::SoftCap& cap : caps) {
    for_each_case<2>(kActs, {{1, 1}, {3, 10}, {9, 1000}, {5, 50304}}, [&](DType t, std::array<int64_t, 2> shape) {
      const auto [rows, vocab] = shape;
      input("z", t, {rows, vocab}, -40.0, 40.0);
      indices_arg("targets", {rows}, static_cast<int32_t>(vocab));
      output("losses", DType::f32, {rows});
      output("dz", t, {rows, vocab});
      output("capped", t, {rows, vocab});
      run([&](const Side& s) {
        ops::softcap_cross_entropy(s["losses"], s["dz"], s["z"], s["targets"], cap, 0.5);
        ops::softcap_forward(s["capped"], s["z"], cap);
      });
      expect_near("losses", kF32Tol);
      // dz = 0.5 (softmax - onehot) * cap': terms of size 0.5 (exactly 0 when vocab is 1).
      expect_near("dz", t == DType::f32 ? kF32Tol : kBf16One, 0.5);
      expect_near("capped", t == DType::f32 ? kF32Tol : kBf16One);
      const double want_sum = ops::sum_losses(Side(*this, false)["losses"]);
      EXPECT_NEAR(ops::sum_losses(Side(*this, true)["losses"]), want_sum, kF32Tol * (1 + std::fabs(want_sum)));

      // Losses only (evaluation), and the gradient in place over the logits (as the model).
      poison("losses");
      run_cuda([&](const Side& s) { ops::softcap_cross_entropy(s["losses"], Tensor(), s["z"], s["targets"], cap, 0.5); });
      expect_near_rel("losses without dz", device("losses"), wide(cpu("losses")), kF32Tol);
      run_cuda([&](const Side& s) { ops::softcap_cross_entropy(s["losses"], s["z"], s["z"], s["targets"], cap, 0.5); });
      expect_near_rel("dz in place", device("z"), wide(cpu("dz")), t == DType::f32 ? kF32Tol : kBf16One, 0.5);
    }, "cap kind " + std::to_string(static_cast<int>(cap.kind)));
  }
}

// The one-pass bf16 kernel (SPEEDRUN_HEAD=fused; never run on a GPU when written) against the
// CPU on the same bf16 logits: both caps of the project (Track 3's algebraic cap, record
// #26's sigmoid cap) and none; rows of 16-byte vectors (vocab % 8 == 0: fewer chunks than
// threads, one more than a block's 512, the padded GPT-2 vocabulary) and of 2-byte elements
// (vocab % 8 != 0), and a row wider than kFusedMaxVocab (the two-sweep fallback).
// Tolerances: the CPU computes in fp32 from the same bf16 values (cuda_op_case.h), so the
// losses differ by summation order and the kernel's approximate rsqrtf/__expf (a few fp32
// ulp per term: ~1e-6 of the loss at most, kF32Tol relative allows 1e-5); dz is one fp32
// value rounded once to bf16 (kBf16One, of a scale of 0.5 = grad_scale). The rounding of the logits to
// bf16 before the cap is not visible here (both sides see bf16 logits); the model tests
// (CudaModel.*WithEachStorage) bound it: |dz| changes by one bf16 rounding of z times the
// cap's slope, and the loss by at most 2 max_v |s'(z_v) dz_v| <= 2 * 2^-9 max_z |z s'(z)|
// (0.385 c for the algebraic cap: 0.023 for c = 15), the same rounding upstream's bf16 head has.
CUDA_OP_CASE(SoftcapCrossEntropyFusedMatchesCpu) {
  using Kind = ops::SoftCap::Kind;
  const ops::SoftCap caps[] = {{Kind::algebraic, 15.0, 1.0}, {Kind::sigmoid, 30.0, 7.5 * 27.7128}, {Kind::none, 0.0, 1.0}};
#if SPEEDRUN_HAVE_CUDA
  const cuda::HeadKernel previous = cuda::set_head_kernel(cuda::HeadKernel::fused);
  const int64_t wide_row = cuda::kFusedMaxVocab + 8;
#else
  const int64_t wide_row = 110600;
#endif
  for (const ops::SoftCap& cap : caps) {
    for_each_case<2>({DType::bf16}, {{1, 1}, {3, 10}, {9, 1000}, {4, 4104}, {5, 50304}, {2, 50301}, {1, wide_row}},
                     [&](DType t, std::array<int64_t, 2> shape) {
      const auto [rows, vocab] = shape;
      input("z", t, {rows, vocab}, -40.0, 40.0);
      indices_arg("targets", {rows}, static_cast<int32_t>(vocab));
      output("losses", DType::f32, {rows});
      output("dz", t, {rows, vocab});
      run([&](const Side& s) { ops::softcap_cross_entropy(s["losses"], s["dz"], s["z"], s["targets"], cap, 0.5); });
      expect_near("losses", kF32Tol);
      expect_near("dz", kBf16One, 0.5);
      // Deterministic: the same losses again, bit for bit (fixed-order block reductions).
      const std::vector<float> first = device("losses");
      poison("losses");
      run_cuda([&](const Side& s) { ops::softcap_cross_entropy(s["losses"], Tensor(), s["z"], s["targets"], cap, 0.5); });
      EXPECT_EQ(device("losses"), first) << "losses only (evaluation) differ from the losses with dz";
      // In place over the logits, as the model calls it.
      run_cuda([&](const Side& s) { ops::softcap_cross_entropy(s["losses"], s["z"], s["z"], s["targets"], cap, 0.5); });
      expect_near_rel("dz in place", device("z"), wide(cpu("dz")), kBf16One, 0.5);
    }, "cap kind " + std::to_string(static_cast<int>(cap.kind)));
  }
#if SPEEDRUN_HAVE_CUDA
  cuda::set_head_kernel(previous);
#endif
}

}  // namespace
}  // namespace speedrun::test
