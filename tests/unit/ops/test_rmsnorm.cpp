// ops::rmsnorm_* and ops::qk_norm_* (RMSNorm without gains over each head).
#include <cstring>

#include "cuda_op_case.h"
#include "test_ops_common.h"

#include "kernels/ops/ops_cuda.h"

namespace speedrun::test {
namespace {

constexpr double kModelEps = 0x1p-23;    // upstream's effective eps: fp32 machine epsilon (F.rms_norm computes bf16 in fp32)
constexpr double kU32 = 0x1p-24;         // unit roundoff of fp32
// An eps large enough to matter against mean(x^2) ~ 1/3 of the inputs, so that the eps
// term itself is checked (kModelEps and 1e-6 hardly move the result).
constexpr double kLargeEps = 0.1;

// The definition, in double: out = x r g, r = 1 / sqrt(mean(x^2) + eps).
void reference_rmsnorm(std::vector<double>& out, std::vector<double>& rstd, const std::vector<double>& x,
                       const std::vector<double>* gains, int64_t rows, int64_t channels, double eps) {
  out.resize(x.size());
  rstd.resize(rows);
  for (int64_t n = 0; n < rows; ++n) {
    double ss = 0;
    for (int64_t c = 0; c < channels; ++c) ss += x[n * channels + c] * x[n * channels + c];
    rstd[n] = 1.0 / std::sqrt(ss / channels + eps);
    for (int64_t c = 0; c < channels; ++c)
      out[n * channels + c] = x[n * channels + c] * rstd[n] * (gains ? (*gains)[c] : 1.0);
  }
}

class OpsRmsNorm : public OpsTest {};

TEST_F(OpsRmsNorm, ForwardMatchesReference) {
  for (auto [rows, channels] : Shapes<2>{{1, 1}, {3, 7}, {5, 13}, {4, 64}, {2, 1000}}) {
    for (double eps : {kModelEps, 1e-6, kLargeEps}) {
      const std::vector<double> x = float_representable(uniform(rows * channels));
      const std::vector<double> gains = float_representable(uniform(channels, 0.5, 1.5));
      for (bool with_gains : {true, false}) {
        std::vector<double> want, want_rstd;
        reference_rmsnorm(want, want_rstd, x, with_gains ? &gains : nullptr, rows, channels, eps);
        const std::string what = "rows " + std::to_string(rows) + " C " + std::to_string(channels) + " eps " +
                                 std::to_string(eps) + (with_gains ? " gains" : " no gains");

        std::vector<double> x64 = x, g64 = gains, out(x.size()), rstd(rows);
        ops::rmsnorm_forward(view(out, {rows, channels}), view(rstd, {rows}), view(x64, {rows, channels}),
                             with_gains ? view(g64, {channels}) : Tensor(), eps);
        expect_near_rel("f64 out " + what, out, want, 1e-14);
        expect_near_rel("f64 rstd " + what, rstd, want_rstd, 1e-14);

        // fp32: the sum of squares in 8 lanes has relative error <= (C/8 + 3) u; mean, +eps,
        // sqrt (halves it) and the reciprocal add ~3u, the products ~2u:
        // |err| <= ((C/8 + 3)/2 + 6) u |want| elementwise.
        std::vector<float> x32 = cast<float>(x), g32 = cast<float>(gains), out32(x.size()), rstd32(rows);
        ops::rmsnorm_forward(view(out32, {rows, channels}), view(rstd32, {rows}), view(x32, {rows, channels}),
                             with_gains ? view(g32, {channels}) : Tensor(), eps);
        const double rel = ((channels / 8.0 + 3) / 2 + 6) * kU32;
        expect_within("f32 out " + what, out32, want, [&](size_t i) { return rel * std::fabs(want[i]) + 1e-30; });
        expect_within("f32 rstd " + what, rstd32, want_rstd,
                      [&](size_t i) { return rel * std::fabs(want_rstd[i]); });
      }
    }
  }
}

TEST_F(OpsRmsNorm, BackwardMatchesFiniteDifferences) {
  for (auto [rows, channels] : Shapes<2>{{1, 1}, {3, 7}, {5, 13}, {2, 64}}) {
    for (double eps : {kModelEps, 1e-6, kLargeEps}) {
      if (channels == 1 && eps < 1e-3) continue;  // x / |x|: no derivative to speak of
      for (bool with_gains : {true, false}) {
        const std::string what = "rows " + std::to_string(rows) + " C " + std::to_string(channels) + " eps " +
                                 std::to_string(eps) + (with_gains ? " gains" : " no gains");
        std::vector<double> x = uniform(rows * channels), gains = uniform(channels, 0.5, 1.5);
        std::vector<double> r = uniform(rows * channels);
        std::vector<double> out(x.size()), rstd(rows);
        const Tensor g = with_gains ? view(gains, {channels}) : Tensor();
        auto objective = [&] {
          ops::rmsnorm_forward(view(out, {rows, channels}), view(rstd, {rows}), view(x, {rows, channels}), g, eps);
          return weighted_sum(r, out);
        };
        objective();
        std::vector<double> dx(x.size()), dgains(channels, 0.0);
        ops::rmsnorm_backward(view(dx, {rows, channels}), with_gains ? view(dgains, {channels}) : Tensor(),
                              view(r, {rows, channels}), view(x, {rows, channels}), g, view(rstd, {rows}), false);
        expect_gradient("dx " + what, x, dx, objective);
        if (with_gains) expect_gradient("dgains " + what, gains, dgains, objective);
      }
    }
  }
}

TEST_F(OpsRmsNorm, BackwardAccumulatesAndAliases) {
  const int64_t rows = 6, channels = 24;
  std::vector<float> x = cast<float>(uniform(rows * channels)), gains = cast<float>(uniform(channels, 0.5, 1.5));
  std::vector<float> dout = cast<float>(uniform(rows * channels)), rstd(rows), out(x.size());
  ops::rmsnorm_forward(view(out, {rows, channels}), view(rstd, {rows}), view(x, {rows, channels}),
                       view(gains, {channels}), kModelEps);

  std::vector<float> fresh(x.size()), dgains_once(channels, 0.0f);
  ops::rmsnorm_backward(view(fresh, {rows, channels}), view(dgains_once, {channels}), view(dout, {rows, channels}),
                        view(x, {rows, channels}), view(gains, {channels}), view(rstd, {rows}), false);

  // accumulate_dx adds the same values onto what is there; dgains always accumulates.
  std::vector<float> start = cast<float>(uniform(rows * channels)), acc = start, dgains_twice = dgains_once;
  ops::rmsnorm_backward(view(acc, {rows, channels}), view(dgains_twice, {channels}), view(dout, {rows, channels}),
                        view(x, {rows, channels}), view(gains, {channels}), view(rstd, {rows}), true);
  std::vector<float> want(x.size()), dgains_doubled(channels);
  for (size_t i = 0; i < want.size(); ++i) want[i] = start[i] + fresh[i];
  for (int64_t c = 0; c < channels; ++c) dgains_doubled[c] = 2 * dgains_once[c];
  expect_bitwise_equal("accumulate_dx", acc, want);
  expect_bitwise_equal("dgains twice", dgains_twice, dgains_doubled);

  // Empty dx: only dgains.
  std::vector<float> dgains_only(channels, 0.0f);
  ops::rmsnorm_backward(Tensor(), view(dgains_only, {channels}), view(dout, {rows, channels}),
                        view(x, {rows, channels}), view(gains, {channels}), view(rstd, {rows}), false);
  expect_bitwise_equal("dgains without dx", dgains_only, dgains_once);

  // Declared: out may alias x in the forward.
  std::vector<float> in_place = x, rstd2(rows);
  ops::rmsnorm_forward(view(in_place, {rows, channels}), view(rstd2, {rows}), view(in_place, {rows, channels}),
                       view(gains, {channels}), kModelEps);
  expect_bitwise_equal("forward in place", in_place, out);
  // Also supported: dx aliasing dout (without accumulate).
  std::vector<float> dx_in_dout = dout, unused(channels, 0.0f);
  ops::rmsnorm_backward(view(dx_in_dout, {rows, channels}), view(unused, {channels}),
                        view(dx_in_dout, {rows, channels}), view(x, {rows, channels}), view(gains, {channels}),
                        view(rstd, {rows}), false);
  expect_bitwise_equal("dx aliasing dout", dx_in_dout, fresh);
}

TEST_F(OpsRmsNorm, IsThreadCountDeterministic) {
  const int64_t rows = 1000, channels = 200;
  const std::vector<float> x = cast<float>(uniform(rows * channels)), gains = cast<float>(uniform(channels, 0.5, 1.5));
  const std::vector<float> dout = cast<float>(uniform(rows * channels));
  struct Result {
    std::vector<float> out, rstd, dx, dgains;
  };
  auto run = [&](int threads) {
    Result r{std::vector<float>(x.size()), std::vector<float>(rows), std::vector<float>(x.size()),
             std::vector<float>(channels, 0.0f)};
    std::vector<float> xc = x, gc = gains, dc = dout;
    with_threads(threads, [&] {
      ops::rmsnorm_forward(view(r.out, {rows, channels}), view(r.rstd, {rows}), view(xc, {rows, channels}),
                           view(gc, {channels}), kModelEps);
      ops::rmsnorm_backward(view(r.dx, {rows, channels}), view(r.dgains, {channels}), view(dc, {rows, channels}),
                            view(xc, {rows, channels}), view(gc, {channels}), view(r.rstd, {rows}), false);
    });
    return r;
  };
  const Result one = run(1), three = run(3);
  expect_bitwise_equal("out", one.out, three.out);
  expect_bitwise_equal("rstd", one.rstd, three.rstd);
  expect_bitwise_equal("dx", one.dx, three.dx);
  expect_bitwise_equal("dgains", one.dgains, three.dgains);
}

class OpsQkNorm : public OpsTest {};

TEST_F(OpsQkNorm, IsRmsNormOverEachHead) {
  const int64_t rows = 5, heads = 3, head_dim = 8;
  std::vector<float> x = cast<float>(uniform(rows * heads * head_dim));
  std::vector<float> out(x.size()), rstd(rows * heads), want(x.size()), want_rstd(rows * heads);
  ops::qk_norm_forward(view(out, {rows, heads * head_dim}), view(rstd, {rows * heads}),
                       view(x, {rows, heads * head_dim}), head_dim, kModelEps);
  ops::rmsnorm_forward(view(want, {rows * heads, head_dim}), view(want_rstd, {rows * heads}),
                       view(x, {rows * heads, head_dim}), Tensor(), kModelEps);
  expect_bitwise_equal("out", out, want);
  expect_bitwise_equal("rstd", rstd, want_rstd);
  // (B, T, H*D) views work as well as (N, H*D); out may alias x.
  ops::qk_norm_forward(view(x, {1, rows, heads * head_dim}), view(rstd, {rows * heads}),
                       view(x, {1, rows, heads * head_dim}), head_dim, kModelEps);
  expect_bitwise_equal("in place", x, want);
}

TEST_F(OpsQkNorm, BackwardMatchesFiniteDifferences) {
  for (auto [rows, heads, head_dim] : Shapes<3>{{1, 1, 4}, {3, 2, 8}, {2, 3, 12}}) {
    std::vector<double> x = uniform(rows * heads * head_dim), r = uniform(rows * heads * head_dim);
    std::vector<double> out(x.size()), rstd(rows * heads);
    auto objective = [&] {
      ops::qk_norm_forward(view(out, {rows, heads * head_dim}), view(rstd, {rows * heads}),
                           view(x, {rows, heads * head_dim}), head_dim, kModelEps);
      return weighted_sum(r, out);
    };
    objective();
    std::vector<double> dx(x.size());
    ops::qk_norm_backward(view(dx, {rows, heads * head_dim}), view(r, {rows, heads * head_dim}),
                          view(x, {rows, heads * head_dim}), view(rstd, {rows * heads}), head_dim);
    expect_gradient("dx heads " + std::to_string(heads) + " D " + std::to_string(head_dim), x, dx, objective);
  }
}

// ops::residual_rmsnorm_forward on the CPU is residual_forward then rmsnorm_forward, bit for
// bit (f32 and f64; with and without gains; sum over a and out over b in place too).
TEST_F(OpsRmsNorm, ResidualRmsNormIsTheSequence) {
  for (auto [rows, channels] : Shapes<2>{{1, 1}, {3, 7}, {5, 64}, {2, 1000}}) {
    for (bool with_gains : {true, false}) {
      const std::string what = "rows " + std::to_string(rows) + " C " + std::to_string(channels) +
                               (with_gains ? " gains" : " no gains");
      auto check = [&]<class T>(std::type_identity<T>) {
        const int64_t n = rows * channels;
        std::vector<T> a = cast<T>(uniform(n)), b = cast<T>(uniform(n)), g = cast<T>(uniform(channels, 0.5, 1.5));
        const Tensor gains = with_gains ? view(g, {channels}) : Tensor();
        std::vector<T> sum(n), out(n), rstd(rows), sum_s(n), out_s(n), rstd_s(rows);
        ops::residual_rmsnorm_forward(view(sum, {rows, channels}), view(out, {rows, channels}), view(rstd, {rows}),
                                      view(a, {rows, channels}), view(b, {rows, channels}), gains, kModelEps);
        ops::residual_forward(view(sum_s, {rows, channels}), view(a, {rows, channels}), view(b, {rows, channels}));
        ops::rmsnorm_forward(view(out_s, {rows, channels}), view(rstd_s, {rows}), view(sum_s, {rows, channels}), gains,
                             kModelEps);
        EXPECT_EQ(sum, sum_s) << what;
        EXPECT_EQ(out, out_s) << what;
        EXPECT_EQ(rstd, rstd_s) << what;
        // Not vacuous: the sum is not a (b is random, never all zeros) and out is normed.
        EXPECT_NE(sum, a) << what;
        EXPECT_NE(out, sum) << what;
        // In place: sum over a, out over b.
        std::vector<T> a2 = a, b2 = b, rstd2(rows);
        ops::residual_rmsnorm_forward(view(a2, {rows, channels}), view(b2, {rows, channels}), view(rstd2, {rows}),
                                      view(a2, {rows, channels}), view(b2, {rows, channels}), gains, kModelEps);
        EXPECT_EQ(a2, sum_s) << what;
        EXPECT_EQ(b2, out_s) << what;
        EXPECT_EQ(rstd2, rstd_s) << what;
      };
      check(std::type_identity<float>{});
      check(std::type_identity<double>{});
    }
  }
}

TEST_F(OpsRmsNorm, RejectsBadArguments) {
  std::vector<float> x(4 * 8), out(4 * 8), rstd(4), gains(8), small(3);
  std::vector<double> x64(4 * 8);
  EXPECT_INVALID_ARGUMENT(ops::rmsnorm_forward(view(out, {4, 7}), view(rstd, {4}), view(x, {4, 8}), Tensor(), 1e-6),
                          "rmsnorm_forward", "out", "(4, 7)");
  EXPECT_INVALID_ARGUMENT(ops::rmsnorm_forward(view(out, {4, 8}), view(small, {3}), view(x, {4, 8}), Tensor(), 1e-6),
                          "rmsnorm_forward", "rstd", "(3)");
  EXPECT_INVALID_ARGUMENT(
      ops::rmsnorm_forward(view(out, {4, 8}), view(rstd, {4}), view(x, {4, 8}), view(small, {3}), 1e-6),
      "rmsnorm_forward", "gains");
  EXPECT_INVALID_ARGUMENT(
      ops::rmsnorm_forward(view(out, {4, 8}), view(rstd, {4}), view(x64, {4, 8}), Tensor(), 1e-6),
      "rmsnorm_forward", "out", "f32", "f64");
  EXPECT_INVALID_ARGUMENT(ops::rmsnorm_forward(view(out, {4, 8}), view(rstd, {4}), view(x, {4, 8}), Tensor(), -1.0),
                          "rmsnorm_forward", "eps");
  EXPECT_INVALID_ARGUMENT(ops::rmsnorm_forward(view(out, {4, 8}), view(rstd, {4}), on_cuda(view(x, {4, 8})),
                                               Tensor(), 1e-6),
                          "rmsnorm_forward", "cuda");
  EXPECT_INVALID_ARGUMENT(ops::rmsnorm_backward(view(out, {4, 8}), view(small, {3}), view(x, {4, 8}),
                                                view(x, {4, 8}), view(gains, {8}), view(rstd, {4}), false),
                          "rmsnorm_backward", "dgains");
  EXPECT_INVALID_ARGUMENT(ops::rmsnorm_backward(view(out, {4, 8}), Tensor(), view(x, {8, 4}), view(x, {4, 8}),
                                                Tensor(), view(rstd, {4}), false),
                          "rmsnorm_backward", "dout", "(8, 4)");
  EXPECT_INVALID_ARGUMENT(
      ops::qk_norm_forward(view(out, {4, 8}), view(rstd, {4}), view(x, {4, 8}), 3, 1e-6), "qk_norm_forward",
      "head_dim = 3");
  EXPECT_INVALID_ARGUMENT(
      ops::qk_norm_forward(view(out, {4, 8}), view(rstd, {4}), view(x, {4, 8}), 4, 1e-6), "qk_norm_forward",
      "rstd", "8 elements");
  EXPECT_INVALID_ARGUMENT(
      ops::qk_norm_backward(view(out, {4, 8}), view(x, {4, 8}), view(x, {4, 8}), view(rstd, {4}), 4),
      "qk_norm_backward", "rstd");
  // residual_rmsnorm_forward: b's shape, and out over sum (one result would be lost).
  std::vector<float> b(4 * 8), sum(4 * 8);
  EXPECT_INVALID_ARGUMENT(ops::residual_rmsnorm_forward(view(sum, {4, 8}), view(out, {4, 8}), view(rstd, {4}),
                                                        view(x, {4, 8}), view(b, {8, 4}), Tensor(), 1e-6),
                          "residual_rmsnorm_forward", "b", "(8, 4)");
  EXPECT_INVALID_ARGUMENT(ops::residual_rmsnorm_forward(view(sum, {4, 8}), view(sum, {4, 8}), view(rstd, {4}),
                                                        view(x, {4, 8}), view(b, {4, 8}), Tensor(), 1e-6),
                          "residual_rmsnorm_forward", "out overlaps sum");
  EXPECT_INVALID_ARGUMENT(ops::residual_rmsnorm_forward(view(sum, {4, 8}), view(out, {4, 8}), view(rstd, {4}),
                                                        view(x, {4, 8}), view(b, {4, 8}), view(small, {3}), 1e-6),
                          "residual_rmsnorm_forward", "gains");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::residual_rmsnorm_forward(on_cuda(view(sum, {4, 8})), on_cuda(view(out, {4, 8})),
                                                            on_cuda(view(rstd, {4})), on_cuda(view(x, {4, 8})),
                                                            on_cuda(view(b, {4, 8})), Tensor(), 1e-6),
                              "residual_rmsnorm_forward");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::rmsnorm_forward(on_cuda(view(out, {4, 8})), on_cuda(view(rstd, {4})),
                                                   on_cuda(view(x, {4, 8})), Tensor(), 1e-6),
                              "rmsnorm_forward");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::qk_norm_backward(on_cuda(view(out, {4, 8})), on_cuda(view(x, {4, 8})),
                                                    on_cuda(view(x, {4, 8})), on_cuda(view(rstd, {4})), 8),
                              "qk_norm_backward");
}

}  // namespace
}  // namespace speedrun::test

// ---- CUDA against the CPU (cuda_op_case.h) -------------------------------------------------
namespace speedrun::test {
namespace {

// Both kernel sets (kernels/ops/rmsnorm.cu: legacy, and the one-pass set that is opt-in until
// it has passed on a GPU) run every case. Besides the small shapes, the one-pass set needs:
// rows enough for its persistent grid to loop and for dgains to span many blocks (4099,
// 20000), channel counts whose 16-byte vectors leave lanes masked (40, 200, 384, 520, 1024;
// f32 1000), and its fallbacks to the legacy kernels (2048 channels; bf16 1000, not a
// multiple of 8).
constexpr std::initializer_list<cuda::RmsNormKernel> kRmsNormKernels = {cuda::RmsNormKernel::legacy,
                                                                        cuda::RmsNormKernel::fast};

const char* kernel_name(cuda::RmsNormKernel k) { return k == cuda::RmsNormKernel::fast ? "one-pass" : "legacy"; }

// Selects a kernel set for one scope (the process-wide choice is restored after).
class RmsNormKernelScope {
 public:
  explicit RmsNormKernelScope(cuda::RmsNormKernel k) : previous_(cuda::set_rmsnorm_kernel(k)) {}
  ~RmsNormKernelScope() { cuda::set_rmsnorm_kernel(previous_); }
  RmsNormKernelScope(const RmsNormKernelScope&) = delete;
  RmsNormKernelScope& operator=(const RmsNormKernelScope&) = delete;

 private:
  cuda::RmsNormKernel previous_;
};

CUDA_OP_CASE(RmsNormMatchesCpu) {
  for (auto [kernel, with_gains] : {std::pair{cuda::RmsNormKernel::legacy, true}, {cuda::RmsNormKernel::legacy, false},
                                    {cuda::RmsNormKernel::fast, true}, {cuda::RmsNormKernel::fast, false}}) {
    const RmsNormKernelScope scope(kernel);
    for_each_case<2>(kActs, {{1, 1}, {3, 5}, {9, 64}, {33, 100}, {130, 768}, {4099, 768}, {20000, 768}, {7, 40},
                             {5, 200}, {3, 384}, {9, 520}, {2, 1024}, {6, 1000}, {3, 2048}},
                     [&](DType t, std::array<int64_t, 2> shape) {
      const auto [rows, ch] = shape;
      const double eps = 1.0 / 128;
      const std::string gains = with_gains ? "g" : "";
      input("x", t, {rows, ch});
      input("g", DType::f32, {ch}, 0.5, 1.5);
      input("dout", t, {rows, ch});
      output("y", t, {rows, ch});
      output("rstd", DType::f32, {rows});
      run([&](const Side& s) { ops::rmsnorm_forward(s["y"], s["rstd"], s["x"], s[gains], eps); });
      expect_near("y", t == DType::f32 ? kF32Tol : kBf16One);
      expect_near("rstd", t == DType::f32 ? kF32Tol : kF32SumTol);

      // Backward with the CPU's rstd on both sides: written dx, and accumulated dx + dgains.
      from_cpu("rstd_ref", "rstd", DType::f32);
      output("dx", t, {rows, ch});
      accumulator("dx_acc", t, {rows, ch});
      accumulator("dg", DType::f32, {ch});
      const std::vector<float> dg0 = cpu("dg");
      run([&](const Side& s) {
        ops::rmsnorm_backward(s["dx"], Tensor(), s["dout"], s["x"], s[gains], s["rstd_ref"], false);
      });
      const double tol_dx = t == DType::f32 ? kF32SumTol : kBf16One;
      expect_near("dx", tol_dx);
      run([&](const Side& s) {
        ops::rmsnorm_backward(s["dx_acc"], with_gains ? s["dg"] : Tensor(), s["dout"], s["x"], s[gains],
                              s["rstd_ref"], true);
      });
      expect_near("dx_acc", tol_dx);
      if (with_gains) expect_near("dg", kF32SumTol);
      else expect_near_rel("dgains untouched", device("dg"), wide(dg0), 0.0);
    }, std::string(with_gains ? "gains, " : "no gains, ") + kernel_name(kernel) + " kernels");
  }
}

// Selects the residual + norm fusion (SPEEDRUN_FUSE_NORMS) for one scope.
class NormFusionScope {
 public:
  explicit NormFusionScope(cuda::NormFusion f) : previous_(cuda::set_norm_fusion(f)) {}
  ~NormFusionScope() { cuda::set_norm_fusion(previous_); }
  NormFusionScope(const NormFusionScope&) = delete;
  NormFusionScope& operator=(const NormFusionScope&) = delete;

 private:
  cuda::NormFusion previous_;
};

// ops::residual_rmsnorm_forward, fused (kernels/ops/rmsnorm.cu, residual_rmsnorm_forward_rows)
// and not, against the CPU (residual_forward then rmsnorm_forward in fp32). The shapes of
// RmsNormMatchesCpu: the one-pass layouts, masked lanes, a looping persistent grid, and the
// fallbacks (2048 channels; bf16 1000). Also in place: sum over a, and out over b (the
// aliasing the op allows).
// Tolerances. f32: the sum is the same fp32 addition on both sides (exact: 0), out and rstd
// differ only in the order of the row's sum of squares (kF32Tol). bf16: the device rounds
// the sum to bf16 (one rounding: kBf16One) and normalizes the ROUNDED sum, as the model's
// unfused calls do, while the CPU keeps the fp32 sum; so rstd (a mean over the row of values
// each moved by at most 2^-9 relative) moves by at most ~2^-9 relative (kBf16One), and out
// sees the sum's rounding, rstd's, and its own rounding on store: kBf16Two (2^-7) covers the
// three half-ulps (3 x 2^-9 < 2^-7).
CUDA_OP_CASE(ResidualRmsNormMatchesCpu) {
  for (cuda::NormFusion fusion : {cuda::NormFusion::off, cuda::NormFusion::on}) {
    for (bool with_gains : {true, false}) {
      const NormFusionScope scope(fusion);
      const bool on = fusion == cuda::NormFusion::on;
      for_each_case<2>(kActs, {{1, 1}, {3, 5}, {9, 64}, {33, 100}, {130, 768}, {4099, 768}, {20000, 768}, {7, 40},
                               {5, 200}, {3, 384}, {9, 520}, {2, 1024}, {6, 1000}, {3, 2048}},
                       [&](DType t, std::array<int64_t, 2> shape) {
        const auto [rows, ch] = shape;
        const double eps = 1.0 / 128;
        const std::string gains = with_gains ? "g" : "";
        input("a", t, {rows, ch});
        input("b", t, {rows, ch});
        input("g", DType::f32, {ch}, 0.5, 1.5);
        output("sum", t, {rows, ch});
        output("y", t, {rows, ch});
        output("rstd", DType::f32, {rows});
        // Whether the fused kernel is what runs: the eligible shapes with the fusion on only.
        const int64_t v = t == DType::bf16 ? 8 : 4;
        const bool eligible = ch % v == 0 && ch <= 1024;
        {
          const Tensor a = arg("a").cuda(), y = arg("y").cuda();
          EXPECT_EQ(cuda::residual_rmsnorm_fuses(t, ch, {a.ptr, y.ptr}), on && eligible);
        }
        run([&](const Side& s) {
          ops::residual_rmsnorm_forward(s["sum"], s["y"], s["rstd"], s["a"], s["b"], s[gains], eps);
        });
        expect_near("sum", t == DType::f32 ? 0.0 : kBf16One);
        expect_near("y", t == DType::f32 ? kF32Tol : kBf16Two);
        expect_near("rstd", t == DType::f32 ? kF32Tol : kBf16One);

        // In place: sum over a, out over b (fresh copies, so the CPU side aliases alike).
        copy_of("a2", "a");
        copy_of("b2", "b");
        output("rstd2", DType::f32, {rows});
        run([&](const Side& s) {
          ops::residual_rmsnorm_forward(s["a2"], s["b2"], s["rstd2"], s["a2"], s["b2"], s[gains], eps);
        });
        expect_near("a2", t == DType::f32 ? 0.0 : kBf16One);
        expect_near("b2", t == DType::f32 ? kF32Tol : kBf16Two);
        expect_near("rstd2", t == DType::f32 ? kF32Tol : kBf16One);
      }, std::string(with_gains ? "gains, " : "no gains, ") + (on ? "fused" : "not fused"));
    }
  }
}

// The fused kernel gives, bit for bit, what the two calls it replaces give on the device
// (residual_forward, then the one-pass forward: the same rounding of the sum, the same
// layout and summation order), so flipping SPEEDRUN_FUSE_NORMS changes no result. Eligible
// shapes only (each asserted to take the fused kernel: a fallback would pass vacuously).
CUDA_OP_CASE(ResidualRmsNormFusedIsTheSequenceBitwise) {
  const RmsNormKernelScope one_pass(cuda::RmsNormKernel::fast);
  for_each_case<2>(kActs, {{130, 768}, {4099, 768}, {7, 40}, {9, 520}, {33, 128}, {2, 1024}},
                   [&](DType t, std::array<int64_t, 2> shape) {
    const auto [rows, ch] = shape;
    input("a", t, {rows, ch});
    input("b", t, {rows, ch});
    input("g", DType::f32, {ch}, 0.5, 1.5);
    for (const char* name : {"sum_f", "y_f", "sum_s", "y_s"}) output(name, t, {rows, ch});
    output("rstd_f", DType::f32, {rows});
    output("rstd_s", DType::f32, {rows});
    {
      const NormFusionScope scope(cuda::NormFusion::on);
      const Tensor a = arg("a").cuda(), y = arg("y_f").cuda();
      ASSERT_TRUE(cuda::residual_rmsnorm_fuses(t, ch, {a.ptr, y.ptr}));
      run_cuda([&](const Side& s) {
        ops::residual_rmsnorm_forward(s["sum_f"], s["y_f"], s["rstd_f"], s["a"], s["b"], s["g"], kModelEps);
      });
    }
    {
      const NormFusionScope scope(cuda::NormFusion::off);
      run_cuda([&](const Side& s) {
        ops::residual_forward(s["sum_s"], s["a"], s["b"]);
        ops::rmsnorm_forward(s["y_s"], s["rstd_s"], s["sum_s"], s["g"], kModelEps);
      });
    }
    for (const char* name : {"sum", "y", "rstd"}) {
      const std::vector<float> fused = device(std::string(name) + "_f"), seq = device(std::string(name) + "_s");
      ASSERT_EQ(fused.size(), seq.size());
      size_t differ = 0;
      for (size_t i = 0; i < fused.size(); ++i) differ += std::memcmp(&fused[i], &seq[i], sizeof(float)) != 0;
      EXPECT_EQ(differ, 0u) << name << ": elements that differ from the unfused calls";
    }
  });
}

// QK-norm is RMSNorm without gains over each head: the same kernels, rows of head_dim.
CUDA_OP_CASE(QkNormMatchesCpu) {
  for (cuda::RmsNormKernel kernel : kRmsNormKernels) {
  const RmsNormKernelScope scope(kernel);
  for_each_case<3>(kActs, {{1, 1, 64}, {7, 3, 64}, {65, 6, 128}, {4099, 6, 128}}, [&](DType t, std::array<int64_t, 3> shape) {
    const auto [rows, heads, hd] = shape;
    const int64_t c = heads * hd;
    input("x", t, {rows, c});
    input("dout", t, {rows, c});
    output("y", t, {rows, c});
    output("rstd", DType::f32, {rows * heads});
    run([&](const Side& s) { ops::qk_norm_forward(s["y"], s["rstd"], s["x"], hd, 1.0 / 128); });
    expect_near("y", t == DType::f32 ? kF32Tol : kBf16One);
    from_cpu("rstd_ref", "rstd", DType::f32);
    output("dx", t, {rows, c});
    run([&](const Side& s) { ops::qk_norm_backward(s["dx"], s["dout"], s["x"], s["rstd_ref"], hd); });
    expect_near("dx", t == DType::f32 ? kF32SumTol : kBf16One);
  }, std::string(kernel_name(kernel)) + " kernels");
  }
}

}  // namespace
}  // namespace speedrun::test
