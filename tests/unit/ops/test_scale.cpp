// ops::scaled_sum and ops::dot (record26's learned scalars).
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
