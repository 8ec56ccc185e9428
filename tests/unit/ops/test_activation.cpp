// ops::relu2_* and ops::residual_*.
#include "cuda_op_case.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

constexpr double kU32 = 0x1p-24;

class OpsRelu2 : public OpsTest {};

TEST_F(OpsRelu2, ForwardIsReluSquared) {
  for (int64_t n : {1, 7, 1000, 40000}) {
    const std::vector<double> x = float_representable(uniform(n, -2.0, 2.0));
    std::vector<double> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = x[i] > 0 ? x[i] * x[i] : 0.0;
    std::vector<double> x64 = x, out64(n);
    ops::relu2_forward(view(out64, {n}), view(x64, {n}));
    expect_bitwise_equal("f64", out64, want);  // x^2 of a float fits a double exactly
    std::vector<float> x32 = cast<float>(x), out32(n);
    ops::relu2_forward(view(out32, {1, n}), view(x32, {1, n}));
    // One fp32 rounding of the square.
    expect_within("f32", out32, want, [&](size_t i) { return kU32 * want[i] + 1e-300; });
    ops::relu2_forward(view(x32, {n}), view(x32, {n}));
    expect_bitwise_equal("in place", x32, out32);
  }
}

TEST_F(OpsRelu2, BackwardMatchesFiniteDifferences) {
  for (int64_t n : {1, 9, 64}) {
    // |x| >= 0.05: the central differences (step 1e-6) never straddle the kink at 0.
    std::vector<double> x = away_from_zero(n, 0.05, 2.0), r = uniform(n), out(n);
    if (n == 1) x[0] = std::fabs(x[0]);  // a single inactive unit has no gradient to check
    auto objective = [&] {
      ops::relu2_forward(view(out, {n}), view(x, {n}));
      return weighted_sum(r, out);
    };
    std::vector<double> dx(n);
    ops::relu2_backward(view(dx, {n}), view(r, {n}), view(x, {n}));
    expect_gradient("dx n " + std::to_string(n), x, dx, objective);
  }
}

TEST_F(OpsRelu2, BackwardMasksAndAliases) {
  std::vector<float> x = {-1.0f, 0.0f, -0.0f, 2.0f, 3.0f, NAN};
  std::vector<float> dout = {NAN, INFINITY, 1.0f, 0.5f, -1.0f, 1.0f};
  std::vector<float> dx(x.size());
  ops::relu2_backward(view(dx, {6}), view(dout, {6}), view(x, {6}));
  EXPECT_EQ(dx[0], 0.0f);  // inactive units pass nothing, not even NaN
  EXPECT_EQ(dx[1], 0.0f);
  EXPECT_EQ(dx[2], 0.0f);
  EXPECT_EQ(dx[3], 2.0f);  // 0.5 * 2 * 2
  EXPECT_EQ(dx[4], -6.0f);
  EXPECT_TRUE(std::isnan(dx[5]));  // NaN propagates, as through torch's relu
  std::vector<float> out(x.size());
  ops::relu2_forward(view(out, {6}), view(x, {6}));
  EXPECT_TRUE(std::isnan(out[5]));
  EXPECT_EQ(out[2], 0.0f);

  std::vector<float> xs = cast<float>(uniform(100)), ds = cast<float>(uniform(100)), want(100);
  ops::relu2_backward(view(want, {100}), view(ds, {100}), view(xs, {100}));
  ops::relu2_backward(view(ds, {100}), view(ds, {100}), view(xs, {100}));
  expect_bitwise_equal("dx aliasing dout", ds, want);
}

// The recomputing backward is the two ops above element by element: bitwise the same
// values, with g over x and dx over dout (how the model calls it), and the aliasing it
// refuses (g over dout would be read after being written).
TEST_F(OpsRelu2, BackwardRecomputeIsForwardPlusBackward) {
  for (int64_t n : {1, 7, 1000, 40000}) {
    std::vector<float> x = cast<float>(uniform(n, -2.0, 2.0)), dout = cast<float>(uniform(n));
    x[0] = 0.0f;  // the kink: g = 0, dx = 0
    std::vector<float> g_want(n), dx_want(n), g(n), dx(n);
    ops::relu2_forward(view(g_want, {n}), view(x, {n}));
    ops::relu2_backward(view(dx_want, {n}), view(dout, {n}), view(x, {n}));
    ops::relu2_backward_recompute(view(dx, {n}), view(g, {n}), view(dout, {n}), view(x, {n}));
    expect_bitwise_equal("g", g, g_want);
    expect_bitwise_equal("dx", dx, dx_want);
    ops::relu2_backward_recompute(view(dout, {n}), view(x, {n}), view(dout, {n}), view(x, {n}));
    expect_bitwise_equal("g over x", x, g_want);
    expect_bitwise_equal("dx over dout", dout, dx_want);
  }
  std::vector<float> x(6, 1.0f), d(6, 1.0f), y(6);
  EXPECT_INVALID_ARGUMENT(ops::relu2_backward_recompute(view(d, {6}), view(d, {6}), view(d, {6}), view(x, {6})),
                          "relu2_backward_recompute", "alias");
  EXPECT_INVALID_ARGUMENT(ops::relu2_backward_recompute(view(y, {6}), Tensor(), view(d, {6}), view(x, {6})),
                          "relu2_backward_recompute", "g");
  EXPECT_INVALID_ARGUMENT(ops::relu2_backward_recompute(view(y, {3, 2}), view(x, {6}), view(d, {6}), view(x, {6})),
                          "relu2_backward_recompute", "dx");
}

class OpsResidual : public OpsTest {};

TEST_F(OpsResidual, ForwardAddsAndAliases) {
  const int64_t rows = 13, cols = 7;
  const std::vector<float> a = cast<float>(uniform(rows * cols)), b = cast<float>(uniform(rows * cols));
  std::vector<float> want(a.size());
  for (size_t i = 0; i < a.size(); ++i) want[i] = a[i] + b[i];
  std::vector<float> ac = a, bc = b, out(a.size());
  ops::residual_forward(view(out, {rows, cols}), view(ac, {rows, cols}), view(bc, {rows, cols}));
  expect_bitwise_equal("out", out, want);
  ops::residual_forward(view(ac, {rows, cols}), view(ac, {rows, cols}), view(bc, {rows, cols}));
  expect_bitwise_equal("out aliasing a", ac, want);
  ac = a;
  ops::residual_forward(view(bc, {1, rows, cols}), view(ac, {rows, cols}), view(bc, {rows, cols}));
  expect_bitwise_equal("out aliasing b", bc, want);
}

TEST_F(OpsResidual, BackwardAccumulatesIntoBothBranches) {
  const int64_t n = 50;
  std::vector<double> a = uniform(n), b = uniform(n), r = uniform(n), out(n);
  auto objective = [&] {
    ops::residual_forward(view(out, {n}), view(a, {n}), view(b, {n}));
    return weighted_sum(r, out);
  };
  std::vector<double> da(n, 0.0), db(n, 0.0);
  ops::residual_backward(view(da, {n}), view(db, {n}), view(r, {n}));
  expect_gradient("da", a, da, objective);
  expect_gradient("db", b, db, objective);

  const std::vector<double> start = uniform(n);
  std::vector<double> acc = start, want(n);
  ops::residual_backward(view(acc, {n}), Tensor(), view(r, {n}));
  ops::residual_backward(Tensor(), view(acc, {n}), view(r, {n}));
  for (int64_t i = 0; i < n; ++i) want[i] = (start[i] + r[i]) + r[i];
  expect_bitwise_equal("two accumulations", acc, want);
}

TEST_F(OpsRelu2, RejectsBadArguments) {
  std::vector<float> x(12), y(12);
  std::vector<double> x64(12);
  EXPECT_INVALID_ARGUMENT(ops::relu2_forward(view(y, {4, 3}), view(x, {3, 4})), "relu2_forward", "out", "(4, 3)");
  EXPECT_INVALID_ARGUMENT(ops::relu2_forward(view(y, {12}), view(x64, {12})), "relu2_forward", "out", "f32");
  EXPECT_INVALID_ARGUMENT(ops::relu2_forward(Tensor(), view(x, {12})), "relu2_forward", "out", "missing");
  EXPECT_INVALID_ARGUMENT(ops::relu2_backward(view(y, {12}), view(x, {6, 2}), view(x, {12})), "relu2_backward",
                          "dout");
  EXPECT_INVALID_ARGUMENT(ops::residual_forward(view(y, {12}), view(x, {12}), view(x64, {12})), "residual_forward",
                          "b", "f64");
  EXPECT_INVALID_ARGUMENT(ops::residual_backward(view(y, {11}), Tensor(), view(x, {12})), "residual_backward", "da");
  EXPECT_INVALID_ARGUMENT(ops::residual_forward(view(y, {12}), view(x, {12}), on_cuda(view(x, {12}))),
                          "residual_forward", "cuda");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::relu2_forward(on_cuda(view(y, {12})), on_cuda(view(x, {12}))), "relu2_forward");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::relu2_backward(on_cuda(view(y, {12})), on_cuda(view(y, {12})),
                                                  on_cuda(view(x, {12}))),
                              "relu2_backward");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::residual_forward(on_cuda(view(y, {12})), on_cuda(view(x, {12})),
                                                    on_cuda(view(x, {12}))),
                              "residual_forward");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::residual_backward(on_cuda(view(y, {12})), Tensor(), on_cuda(view(x, {12}))),
                              "residual_backward");
}

}  // namespace
}  // namespace speedrun::test

// ---- CUDA against the CPU (cuda_op_case.h) -------------------------------------------------
namespace speedrun::test {
namespace {

CUDA_OP_CASE(Relu2AndResidualMatchCpu) {
  for_each_case<1>(kActs, {{1}, {31}, {1000}, {70001}}, [&](DType t, std::array<int64_t, 1> shape) {
    const int64_t n = shape[0];
    input("x", t, {n});
    input("dout", t, {n});
    input("b", t, {n});
    output("y", t, {n});
    output("dx", t, {n});
    output("sum", t, {n});
    run([&](const Side& s) {
      ops::relu2_forward(s["y"], s["x"]);
      ops::relu2_backward(s["dx"], s["dout"], s["x"]);
      ops::residual_forward(s["sum"], s["x"], s["b"]);
    });
    const double tol = t == DType::f32 ? kF32Tol : kBf16One;
    expect_near("y", tol);
    expect_near("dx", tol);
    expect_near("sum", tol);

    // residual_backward accumulates into both branches.
    accumulator("da", t, {n});
    accumulator("db", t, {n});
    run([&](const Side& s) { ops::residual_backward(s["da"], s["db"], s["dout"]); });
    expect_near("da", tol);
    expect_near("db", tol);

    // In place (out aliasing x), as the model calls relu2_backward.
    run_cuda([&](const Side& s) { ops::relu2_backward(s["dout"], s["dout"], s["x"]); });
    expect_near_rel("relu2_backward in place", device("dout"), wide(cpu("dx")), tol);
  });
}

// The recomputing backward (SPEEDRUN_RELU2=recompute; never run on a GPU when written): g and
// dx against the CPU, out of place and in place (g over x, dx over dout, as the model calls
// it). Each output is one fp32 computation rounded once: the tolerances of the case above.
CUDA_OP_CASE(Relu2BackwardRecomputeMatchesCpu) {
  for_each_case<1>(kActs, {{1}, {31}, {1000}, {70001}}, [&](DType t, std::array<int64_t, 1> shape) {
    const int64_t n = shape[0];
    input("x", t, {n}, -2.0, 2.0);
    input("dout", t, {n});
    output("g", t, {n});
    output("dx", t, {n});
    run([&](const Side& s) { ops::relu2_backward_recompute(s["dx"], s["g"], s["dout"], s["x"]); });
    const double tol = t == DType::f32 ? kF32Tol : kBf16One;
    expect_near("g", tol);
    expect_near("dx", tol);
    run_cuda([&](const Side& s) { ops::relu2_backward_recompute(s["dout"], s["x"], s["dout"], s["x"]); });
    expect_near_rel("g over x", device("x"), wide(cpu("g")), tol);
    expect_near_rel("dx over dout", device("dout"), wide(cpu("dx")), tol);
  });
}

}  // namespace
}  // namespace speedrun::test
