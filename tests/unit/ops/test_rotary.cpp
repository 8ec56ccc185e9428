// ops::rotary_tables / rotary_forward / rotary_backward (half-truncated RoPE).
#include "cuda_op_case.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

constexpr double kU32 = 0x1p-24;

// torch 1.13: (1/1024) ** torch.linspace(0, 1, steps=32, dtype=torch.float32), the first 32
// frequencies of upstream's Rotary for head_dim 128.
constexpr float kTorchFreq128[32] = {
    0x1.0p+0f,      0x1.996a2ep-1f, 0x1.47623ap-1f, 0x1.05c9dep-1f, 0x1.a2ac18p-2f, 0x1.4ec94ep-2f, 0x1.0bb53cp-2f,
    0x1.ac2398p-3f, 0x1.565b3ap-3f, 0x1.11c2ep-3f,  0x1.b5d1e4p-4f, 0x1.5e18f6p-4f, 0x1.17f38cp-4f, 0x1.bfb83ap-5f,
    0x1.660384p-5f, 0x1.1e480ep-5f, 0x1.c9d7dcp-6f, 0x1.6e1be8p-6f, 0x1.24c134p-6f, 0x1.d43214p-7f, 0x1.76632p-7f,
    0x1.2b5fd8p-7f, 0x1.dec846p-8f, 0x1.7eda42p-8f, 0x1.3224c4p-8f, 0x1.e99bbep-9f, 0x1.87826ep-9f, 0x1.3910dep-9f,
    0x1.f4add4p-10f, 0x1.905cb8p-10f, 0x1.402514p-10f, 0x1.0p-10f};

// The spec's frequencies in double: (1/base)^(j/(D/4-1)) for j < D/4, then zeros.
double reference_freq(int64_t j, int64_t head_dim, double base) {
  const int64_t quarter = head_dim / 4;
  if (j >= quarter) return 0.0;
  return quarter == 1 ? 1.0 : std::pow(1.0 / base, static_cast<double>(j) / static_cast<double>(quarter - 1));
}

struct Tables {
  std::vector<float> cos, sin;
};
Tables make_tables(int64_t positions, int64_t head_dim, double base) {
  Tables t{std::vector<float>(positions * head_dim / 2), std::vector<float>(positions * head_dim / 2)};
  ops::rotary_tables(view(t.cos, {positions, head_dim / 2}), view(t.sin, {positions, head_dim / 2}), head_dim, base);
  return t;
}

class OpsRotary : public OpsTest {};

TEST_F(OpsRotary, TablesMatchTheFormula) {
  for (auto [positions, head_dim] : Shapes<2>{{1, 4}, {7, 8}, {33, 12}, {1024, 128}}) {
    for (double base : {1024.0, 10000.0}) {
      const Tables t = make_tables(positions, head_dim, base);
      std::vector<double> want_cos(t.cos.size()), want_sin(t.sin.size()), theta(t.cos.size());
      for (int64_t p = 0; p < positions; ++p) {
        for (int64_t j = 0; j < head_dim / 2; ++j) {
          const size_t i = p * head_dim / 2 + j;
          theta[i] = p * reference_freq(j, head_dim, base);
          want_cos[i] = std::cos(theta[i]);
          want_sin[i] = std::sin(theta[i]);
        }
      }
      // fp32 theta: lin_j (1 ulp), powf (1 ulp, times ln(base) ~ 7-9 for the exponent's error)
      // and t * freq (1 ulp) leave |theta32 - theta| <= 10 u |theta|; cos and sin round by u/2.
      auto bound = [&](size_t i) { return (10 * std::fabs(theta[i]) + 1) * kU32; };
      const std::string what = "T " + std::to_string(positions) + " D " + std::to_string(head_dim);
      expect_within("cos " + what, t.cos, want_cos, bound);
      expect_within("sin " + what, t.sin, want_sin, bound);
      for (int64_t p = 0; p < positions; ++p) {
        for (int64_t j = head_dim / 4; j < head_dim / 2; ++j) {  // the truncated half: identity
          ASSERT_EQ(t.cos[p * head_dim / 2 + j], 1.0f);
          ASSERT_EQ(t.sin[p * head_dim / 2 + j], 0.0f);
        }
      }
    }
  }
}

// For head_dim 128 the fp32 frequencies are bitwise torch's, hence the tables are
// cos/sin(fl(t * freq)) of torch's freq (up to the libm's cos, glibc's here).
TEST_F(OpsRotary, TablesUseTorchFrequenciesForHeadDim128) {
  const int64_t positions = 1024, head_dim = 128;
  const Tables t = make_tables(positions, head_dim, 1024.0);
  for (int64_t p = 0; p < positions; ++p) {
    for (int64_t j = 0; j < 32; ++j) {
      const float theta = static_cast<float>(p) * kTorchFreq128[j];
      ASSERT_EQ(t.cos[p * 64 + j], std::cos(theta)) << "t " << p << " j " << j;
      ASSERT_EQ(t.sin[p * 64 + j], std::sin(theta)) << "t " << p << " j " << j;
    }
  }
}

TEST_F(OpsRotary, ForwardMatchesReference) {
  for (auto [batch, seq, heads, head_dim] : Shapes<4>{{1, 1, 1, 4}, {2, 7, 3, 8}, {1, 16, 2, 12}, {2, 5, 1, 128}}) {
    const double base = 1024.0;
    const Tables t = make_tables(seq, head_dim, base);
    const std::vector<double> x = float_representable(uniform(batch * seq * heads * head_dim));
    std::vector<double> want(x.size()), bound(x.size());
    const int64_t half = head_dim / 2;
    for (int64_t row = 0; row < batch * seq * heads; ++row) {
      const int64_t pos = (row / heads) % seq;
      for (int64_t j = 0; j < half; ++j) {
        const double theta = pos * reference_freq(j, head_dim, base);
        const double x1 = x[row * head_dim + j], x2 = x[row * head_dim + j + half];
        want[row * head_dim + j] = x1 * std::cos(theta) + x2 * std::sin(theta);
        want[row * head_dim + j + half] = -x1 * std::sin(theta) + x2 * std::cos(theta);
        // The tables' error (above) times |x1| + |x2|, plus fp32 products and sum.
        bound[row * head_dim + j] = bound[row * head_dim + j + half] =
            (std::fabs(x1) + std::fabs(x2)) * (10 * theta + 4) * kU32 + 1e-30;
      }
    }
    const std::string what = "shape " + std::to_string(batch) + "," + std::to_string(seq) + "," +
                             std::to_string(heads) + "," + std::to_string(head_dim);
    std::vector<double> x64 = x, y64(x.size());
    ops::rotary_forward(view(y64, {batch, seq, heads, head_dim}), view(x64, {batch, seq, heads, head_dim}),
                        view(t.cos, {seq, half}), view(t.sin, {seq, half}));
    expect_within("f64 " + what, y64, want, [&](size_t i) { return bound[i]; });
    std::vector<float> x32 = cast<float>(x), y32(x.size());
    ops::rotary_forward(view(y32, {batch, seq, heads, head_dim}), view(x32, {batch, seq, heads, head_dim}),
                        view(t.cos, {seq, half}), view(t.sin, {seq, half}));
    expect_within("f32 " + what, y32, want, [&](size_t i) { return bound[i]; });
  }
}

TEST_F(OpsRotary, BackwardMatchesFiniteDifferences) {
  for (auto [batch, seq, heads, head_dim] : Shapes<4>{{1, 1, 1, 4}, {2, 7, 3, 8}, {1, 9, 2, 12}}) {
    const Tables t = make_tables(seq, head_dim, 1024.0);
    const int64_t n = batch * seq * heads * head_dim;
    std::vector<double> x = uniform(n), r = uniform(n), y(n);
    auto objective = [&] {
      ops::rotary_forward(view(y, {batch, seq, heads, head_dim}), view(x, {batch, seq, heads, head_dim}),
                          view(t.cos, {seq, head_dim / 2}), view(t.sin, {seq, head_dim / 2}));
      return weighted_sum(r, y);
    };
    std::vector<double> dx(n);
    ops::rotary_backward(view(dx, {batch, seq, heads, head_dim}), view(r, {batch, seq, heads, head_dim}),
                         view(t.cos, {seq, head_dim / 2}), view(t.sin, {seq, head_dim / 2}));
    expect_gradient("dx seq " + std::to_string(seq) + " D " + std::to_string(head_dim), x, dx, objective);
  }
}

TEST_F(OpsRotary, AliasesAndLongerTables) {
  const int64_t batch = 2, seq = 7, heads = 3, head_dim = 16, half = 8;
  const Tables exact = make_tables(seq, head_dim, 1024.0), longer = make_tables(3 * seq, head_dim, 1024.0);
  const std::vector<float> x = cast<float>(uniform(batch * seq * heads * head_dim));
  std::vector<float> xc = x, y(x.size()), dx(x.size());
  const Tensor x4 = view(xc, {batch, seq, heads, head_dim});
  ops::rotary_forward(view(y, {batch, seq, heads, head_dim}), x4, view(exact.cos, {seq, half}),
                      view(exact.sin, {seq, half}));
  ops::rotary_backward(view(dx, {batch, seq, heads, head_dim}), x4, view(exact.cos, {seq, half}),
                       view(exact.sin, {seq, half}));

  std::vector<float> y_long(x.size());
  ops::rotary_forward(view(y_long, {batch, seq, heads, head_dim}), x4, view(longer.cos, {3 * seq, half}),
                      view(longer.sin, {3 * seq, half}));
  expect_bitwise_equal("a table for longer sequences", y_long, y);

  std::vector<float> in_place = x;
  ops::rotary_forward(view(in_place, {batch, seq, heads, head_dim}), view(in_place, {batch, seq, heads, head_dim}),
                      view(exact.cos, {seq, half}), view(exact.sin, {seq, half}));
  expect_bitwise_equal("forward in place", in_place, y);
  std::vector<float> back_in_place = x;
  ops::rotary_backward(view(back_in_place, {batch, seq, heads, head_dim}),
                       view(back_in_place, {batch, seq, heads, head_dim}), view(exact.cos, {seq, half}),
                       view(exact.sin, {seq, half}));
  expect_bitwise_equal("backward in place", back_in_place, dx);

  // The rotation is orthogonal: backward undoes forward up to fp32 rounding.
  std::vector<float> round_trip(x.size());
  ops::rotary_backward(view(round_trip, {batch, seq, heads, head_dim}), view(y, {batch, seq, heads, head_dim}),
                       view(exact.cos, {seq, half}), view(exact.sin, {seq, half}));
  expect_within("backward(forward(x))", round_trip, cast<double>(x), [&](size_t) { return 16 * kU32; });
}

TEST_F(OpsRotary, RejectsBadArguments) {
  std::vector<float> x(2 * 3 * 1 * 8), y(x.size()), cos(3 * 4), sin(3 * 4), short_table(2 * 4);
  std::vector<double> cos64(3 * 4);
  const Tensor x4 = view(x, {2, 3, 1, 8}), y4 = view(y, {2, 3, 1, 8});
  EXPECT_INVALID_ARGUMENT(ops::rotary_forward(view(y, {6, 8}), view(x, {6, 8}), view(cos, {3, 4}), view(sin, {3, 4})),
                          "rotary_forward", "x", "dimensions");
  EXPECT_INVALID_ARGUMENT(ops::rotary_forward(view(y, {2, 3, 1, 8}), x4, view(short_table, {2, 4}),
                                              view(sin, {3, 4})),
                          "rotary_forward", "cos", "(2, 4)");
  EXPECT_INVALID_ARGUMENT(ops::rotary_forward(y4, x4, view(cos, {3, 4}), view(sin, {4, 3})), "rotary_forward", "sin");
  EXPECT_INVALID_ARGUMENT(ops::rotary_forward(y4, x4, view(cos64, {3, 4}), view(sin, {3, 4})), "rotary_forward",
                          "cos", "f64");
  EXPECT_INVALID_ARGUMENT(ops::rotary_forward(view(y, {2, 3, 8, 1}), x4, view(cos, {3, 4}), view(sin, {3, 4})),
                          "rotary_forward", "out");
  EXPECT_INVALID_ARGUMENT(ops::rotary_forward(view(y, {2, 3, 2, 4}), view(x, {2, 3, 2, 4}), view(cos, {3, 4}),
                                              view(sin, {3, 4})),
                          "rotary_forward", "cos");
  EXPECT_INVALID_ARGUMENT(ops::rotary_forward(view(y, {2, 3, 16, 1}), view(x, {2, 3, 16, 1}), view(cos, {3, 4}),
                                              view(sin, {3, 4})),
                          "rotary_forward", "odd head_dim");
  EXPECT_INVALID_ARGUMENT(ops::rotary_backward(y4, view(x, {2, 3, 8, 1}), view(cos, {3, 4}), view(sin, {3, 4})),
                          "rotary_backward");
  EXPECT_INVALID_ARGUMENT(ops::rotary_tables(view(cos, {3, 4}), view(sin, {3, 4}), 6, 1024.0), "rotary_tables",
                          "head_dim = 6");
  EXPECT_INVALID_ARGUMENT(ops::rotary_tables(view(cos, {3, 4}), view(sin, {3, 4}), 16, 1024.0), "rotary_tables",
                          "cos", "(3, 4)");
  EXPECT_INVALID_ARGUMENT(ops::rotary_tables(view(cos, {3, 4}), view(sin, {3, 4}), 8, 0.0), "rotary_tables",
                          "base");
  EXPECT_INVALID_ARGUMENT(ops::rotary_tables(view(cos, {3, 4}), view(short_table, {2, 4}), 8, 1024.0),
                          "rotary_tables", "sin");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::rotary_forward(on_cuda(y4), on_cuda(x4), on_cuda(view(cos, {3, 4})),
                                                  on_cuda(view(sin, {3, 4}))),
                              "rotary_forward");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::rotary_tables(on_cuda(view(cos, {3, 4})), on_cuda(view(sin, {3, 4})), 8, 1024.0),
                              "rotary_tables");
}

}  // namespace
}  // namespace speedrun::test

// ---- CUDA against the CPU (cuda_op_case.h) -------------------------------------------------
namespace speedrun::test {
namespace {

CUDA_OP_CASE(RotaryMatchesCpu) {
  for_each_case<4>(kActs, {{1, 1, 1, 64}, {2, 37, 3, 64}, {1, 130, 2, 128}}, [&](DType t, std::array<int64_t, 4> shape) {
    const auto [B, T, H, D] = shape;
    const int64_t tp = T + 3;  // tables longer than the sequence
    output("cos", DType::f32, {tp, D / 2});
    output("sin", DType::f32, {tp, D / 2});
    run([&](const Side& s) { ops::rotary_tables(s["cos"], s["sin"], D, 1024.0); });
    expect_near("cos", 0.0);  // bitwise: built by the same code
    expect_near("sin", 0.0);

    input("x", t, {B, T, H, D});
    output("y", t, {B, T, H, D});
    output("dx", t, {B, T, H, D});
    run([&](const Side& s) {
      ops::rotary_forward(s["y"], s["x"], s["cos"], s["sin"]);
      ops::rotary_backward(s["dx"], s["x"], s["cos"], s["sin"]);
    });
    const double tol = t == DType::f32 ? kF32Tol : kBf16One;
    expect_near("y", tol);
    expect_near("dx", tol);
    // In place, as the model calls it.
    run_cuda([&](const Side& s) { ops::rotary_forward(s["x"], s["x"], s["cos"], s["sin"]); });
    expect_near_rel("rotary_forward in place", device("x"), wide(cpu("y")), tol);
  });
}

}  // namespace
}  // namespace speedrun::test

// ---- QK-norm fused with rotary (ops::qk_norm_rotary_forward/backward) --------------------------
namespace speedrun::test {
namespace {

class OpsQkNormRotary : public OpsTest {};

// On the CPU the fused calls are the component ops in sequence, bit for bit (f32 and f64; the
// forward also in place, out over x; the backward with dx over dout).
TEST_F(OpsQkNormRotary, IsTheSequence) {
  for (auto [B, T, H, D] : Shapes<4>{{1, 1, 1, 4}, {2, 5, 3, 8}, {1, 9, 2, 64}}) {
    const Tables tab = make_tables(T + 2, D, 1024.0);
    const Tensor cos = view(tab.cos, {T + 2, D / 2}), sin = view(tab.sin, {T + 2, D / 2});
    const int64_t n = B * T * H * D, rows = B * T * H;
    auto check = [&]<class T_>(std::type_identity<T_>) {
      const std::vector<T_> x = cast<T_>(uniform(n)), dout = cast<T_>(uniform(n));
      std::vector<T_> out(n), rstd(rows), dx(n), out_s(n), rstd_s(rows), dx_s(n), dr(dout);
      ops::qk_norm_rotary_forward(view(out, {B, T, H, D}), view(rstd, {rows}), view(x, {B, T, H, D}), cos, sin,
                                  1e-6);
      ops::qk_norm_forward(view(out_s, {B * T, H * D}), view(rstd_s, {rows}), view(x, {B * T, H * D}), D, 1e-6);
      ops::rotary_forward(view(out_s, {B, T, H, D}), view(out_s, {B, T, H, D}), cos, sin);
      EXPECT_EQ(out, out_s);
      EXPECT_EQ(rstd, rstd_s);
      std::vector<T_> in_place = x;
      ops::qk_norm_rotary_forward(view(in_place, {B, T, H, D}), view(rstd, {rows}), view(in_place, {B, T, H, D}),
                                  cos, sin, 1e-6);
      EXPECT_EQ(in_place, out_s);
      ops::qk_norm_rotary_backward(view(dx, {B, T, H, D}), view(dout, {B, T, H, D}), view(x, {B, T, H, D}),
                                   view(rstd_s, {rows}), cos, sin);
      ops::rotary_backward(view(dr, {B, T, H, D}), view(dr, {B, T, H, D}), cos, sin);
      ops::qk_norm_backward(view(dx_s, {B * T, H * D}), view(dr, {B * T, H * D}), view(x, {B * T, H * D}),
                            view(rstd_s, {rows}), D);
      EXPECT_EQ(dx, dx_s);
      EXPECT_NE(dx, dout);  // not vacuous
      std::vector<T_> over_dout = dout;
      ops::qk_norm_rotary_backward(view(over_dout, {B, T, H, D}), view(over_dout, {B, T, H, D}),
                                   view(x, {B, T, H, D}), view(rstd_s, {rows}), cos, sin);
      EXPECT_EQ(over_dout, dx_s);
    };
    check(std::type_identity<float>{});
    check(std::type_identity<double>{});
  }
}

TEST_F(OpsQkNormRotary, RejectsBadArguments) {
  std::vector<float> x(2 * 3 * 2 * 8), out(x.size()), rstd(12), small(5), cos(3 * 4), sin(3 * 4), cos_short(2 * 4);
  EXPECT_INVALID_ARGUMENT(ops::qk_norm_rotary_forward(view(out, {2, 3, 2, 8}), view(small, {5}),
                                                      view(x, {2, 3, 2, 8}), view(cos, {3, 4}), view(sin, {3, 4}),
                                                      1e-6),
                          "qk_norm_rotary_forward", "rstd");
  EXPECT_INVALID_ARGUMENT(ops::qk_norm_rotary_forward(view(out, {2, 3, 2, 8}), view(rstd, {12}),
                                                      view(x, {2, 3, 2, 8}), view(cos_short, {2, 4}),
                                                      view(sin, {3, 4}), 1e-6),
                          "qk_norm_rotary_forward", "cos", "(>= 3, 4)");
  EXPECT_INVALID_ARGUMENT(ops::qk_norm_rotary_backward(view(out, {2, 3, 2, 8}), view(x, {2, 3, 2, 8}),
                                                       view(x, {6, 2, 8}), view(rstd, {12}), view(cos, {3, 4}),
                                                       view(sin, {3, 4})),
                          "qk_norm_rotary_backward", "x");
}

}  // namespace
}  // namespace speedrun::test

namespace speedrun::test {
namespace {

// CUDA against the CPU, with the fusion (SPEEDRUN_FUSE_NORMS) off and on. Shapes: head_dim
// 64 and 128 (the fused kernel's P = 1, 2), row counts that leave warps of a block idle and
// make the grid loop, random tables longer than the sequence (no orthogonality assumed), and
// head_dim 32 (no fused kernel: the sequence runs even with the fusion on).
// Tolerances: f32 as the QK-norm and rotary tests (kF32Tol; the backward's u . x sum
// kF32SumTol). bf16: the device rounds the normed row (or rotary^T dout) to bf16 and then
// the result again, as the unfused kernels do, while the CPU keeps fp32 in between: two
// roundings, kBf16Two. rstd is fp32 arithmetic on exact bf16 inputs (kF32SumTol).
CUDA_OP_CASE(QkNormRotaryMatchesCpu) {
  for (cuda::NormFusion fusion : {cuda::NormFusion::off, cuda::NormFusion::on}) {
    const cuda::NormFusion previous = cuda::set_norm_fusion(fusion);
    const bool on = fusion == cuda::NormFusion::on;
    for_each_case<4>(kActs, {{1, 1, 1, 64}, {2, 37, 3, 64}, {1, 130, 2, 128}, {3, 257, 6, 128}, {2, 9, 3, 32}},
                     [&](DType t, std::array<int64_t, 4> shape) {
      const auto [B, T, H, D] = shape;
      EXPECT_EQ(cuda::qk_norm_rotary_fuses(D), on && (D == 64 || D == 128));
      input("cos", DType::f32, {T + 3, D / 2});
      input("sin", DType::f32, {T + 3, D / 2});
      input("x", t, {B, T, H, D});
      input("dout", t, {B, T, H, D});
      output("y", t, {B, T, H, D});
      output("rstd", DType::f32, {B * T * H});
      run([&](const Side& s) { ops::qk_norm_rotary_forward(s["y"], s["rstd"], s["x"], s["cos"], s["sin"], 1e-6); });
      expect_near("y", t == DType::f32 ? kF32Tol : kBf16Two);
      expect_near("rstd", t == DType::f32 ? kF32Tol : kF32SumTol);
      from_cpu("rstd_ref", "rstd", DType::f32);
      output("dx", t, {B, T, H, D});
      run([&](const Side& s) {
        ops::qk_norm_rotary_backward(s["dx"], s["dout"], s["x"], s["rstd_ref"], s["cos"], s["sin"]);
      });
      expect_near("dx", t == DType::f32 ? kF32SumTol : kBf16Two);
      // In place as the ops allow: out over x, dx over dout (device only, against the CPU above).
      copy_of("x2", "x");
      copy_of("dout2", "dout");
      run_cuda([&](const Side& s) {
        ops::qk_norm_rotary_forward(s["x2"], s["rstd"], s["x2"], s["cos"], s["sin"], 1e-6);
        ops::qk_norm_rotary_backward(s["dout2"], s["dout2"], s["x"], s["rstd_ref"], s["cos"], s["sin"]);
      });
      expect_near_rel("forward in place", device("x2"), wide(cpu("y")), t == DType::f32 ? kF32Tol : kBf16Two);
      expect_near_rel("backward in place", device("dout2"), wide(cpu("dx")), t == DType::f32 ? kF32SumTol : kBf16Two);
    }, on ? "fused" : "not fused");
    cuda::set_norm_fusion(previous);
  }
}

}  // namespace
}  // namespace speedrun::test
