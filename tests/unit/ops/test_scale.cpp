// ops::scaled_sum and ops::dot (record26's learned scalars).
#include "cuda_op_case.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

class OpsScale : public OpsTest {};

TEST_F(OpsScale, ScaledSumIsElementwiseAndMayAlias) {
  for (int64_t n : {1, 7, 100000}) {
    const std::vector<double> x = uniform(n), y = uniform(n);
    const double alpha = uniform(1)[0], beta = uniform(1)[0];
    std::vector<double> out(n), want(n), want_x(n);
    for (int64_t i = 0; i < n; ++i) {
      want[i] = alpha * x[i] + beta * y[i];
      want_x[i] = alpha * x[i];
    }
    ops::scaled_sum(view(out, {n}), alpha, view(x, {n}), beta, view(y, {n}));
    expect_near_rel("alpha x + beta y", out, want, 1e-15);
    ops::scaled_sum(view(out, {n}), alpha, view(x, {n}), 0.0, Tensor{});
    expect_near_rel("alpha x", out, want_x, 1e-15);
    std::vector<double> inplace = x;  // out aliasing x
    ops::scaled_sum(view(inplace, {n}), alpha, view(inplace, {n}), beta, view(y, {n}));
    expect_near_rel("in place", inplace, want, 1e-15);
  }
}

TEST_F(OpsScale, DotMatchesLongDoubleAndIsThreadCountDeterministic) {
  for (int64_t n : {1, 9, 4096, 4097, 300001}) {
    const std::vector<double> x = uniform(n), y = uniform(n);
    long double want = 0;
    for (int64_t i = 0; i < n; ++i) want += static_cast<long double>(x[i]) * y[i];
    // Double accumulation of n products: error <~ n u |x||y| summed magnitudes; 1e-12 relative
    // to sum |x_i y_i| (~n/4) is far above it and far below any real mistake.
    EXPECT_NEAR(ops::dot(view(x, {n}), view(y, {n})), static_cast<double>(want), 1e-12 * n) << n;
    const std::vector<float> xf = cast<float>(x), yf = cast<float>(y);
    double one = 0, three = 0;
    with_threads(1, [&] { one = ops::dot(view(xf, {n}), view(yf, {n})); });
    with_threads(3, [&] { three = ops::dot(view(xf, {n}), view(yf, {n})); });
    EXPECT_EQ(one, three) << n;
  }
}

TEST_F(OpsScale, RejectsMismatchedSizes) {
  std::vector<float> a(6), b(5);
  EXPECT_INVALID_ARGUMENT(ops::dot(view(a, {6}), view(b, {5})), "dot", "y");
  EXPECT_INVALID_ARGUMENT(ops::scaled_sum(view(b, {5}), 1.0, view(a, {6}), 0.0, Tensor{}), "scaled_sum", "out");
}

}  // namespace
}  // namespace speedrun::test

// ---- CUDA against the CPU (cuda_op_case.h) -------------------------------------------------
namespace speedrun::test {
namespace {

// scaled_sum on the device: sizes below, at and above one block and the grid-stride; y
// present and absent; out aliasing x. f32: the device may contract alpha x + beta y into an
// FMA where the CPU does not: one or two fp32 roundings, within kF32Tol. bf16: the CPU
// computes in fp32 on the rounded inputs and its result is compared unrounded against the
// device's one rounding to bf16 (kBf16One).
CUDA_OP_CASE(ScaledSumMatchesCpu) {
  for_each_case<1>(kActs, {{1}, {255}, {256}, {1000}, {300001}}, [&](DType t, std::array<int64_t, 1> shape) {
    const int64_t n = shape[0];
    const double alpha = uniform(1)[0], beta = uniform(1, 0.5, 2.0)[0];
    input("x", t, {n});
    input("y", t, {n});
    output("out", t, {n});
    output("out_x", t, {n});
    copy_of("inplace", "x");
    run([&](const Side& s) {
      ops::scaled_sum(s["out"], alpha, s["x"], beta, s["y"]);
      ops::scaled_sum(s["out_x"], alpha, s["x"], 0.0, Tensor{});
      ops::scaled_sum(s["inplace"], alpha, s["inplace"], beta, s["y"]);
    });
    const double tol = t == DType::f32 ? kF32Tol : kBf16One;
    expect_near("out", tol);
    expect_near("out_x", tol);
    expect_near("inplace", tol);
  });
}

// dot on the device against the CPU's fp64 dot: fp64 accumulation of exact products (f32 and
// bf16 values are exact in fp64), so the two differ by fp64 rounding of n terms only: 1e-12
// relative to sum |x_i y_i| is far above that and far below any lost or doubled element
// (each is ~1/n of it for the sizes here, at least 3e-6). The device's value repeats bitwise
// (fixed grid and order), and a changed element changes it (negative control).
CUDA_OP_CASE(DotMatchesCpuAndRepeats) {
  for_each_case<1>(kActs, {{1}, {255}, {65536}, {65537}, {300001}}, [&](DType t, std::array<int64_t, 1> shape) {
    const int64_t n = shape[0];
    input("x", t, {n});
    input("y", t, {n});
    const Side cpu_side(*this, false), dev(*this, true);
    const double want = ops::dot(cpu_side["x"], cpu_side["y"]);
    double magnitude = 0;
    for (int64_t i = 0; i < n; ++i) magnitude += std::fabs(static_cast<double>(cpu("x")[i]) * cpu("y")[i]);
    const double got = ops::dot(dev["x"], dev["y"]);
    EXPECT_NEAR(got, want, 1e-12 * magnitude);
    EXPECT_EQ(ops::dot(dev["x"], dev["y"]), got);  // bitwise the same on a second call
    std::vector<float> changed = cpu("x");
    changed[static_cast<size_t>(n / 2)] += 0.5f;
    arg("x").dev.write(round_to(t, changed));
    EXPECT_NE(ops::dot(dev["x"], dev["y"]), got);
  });
}

}  // namespace
}  // namespace speedrun::test
