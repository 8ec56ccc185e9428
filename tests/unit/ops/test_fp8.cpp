// ops::fp8_round and the FP8 head emulation (ops.h, "FP8 emulation"; record #26's
// nanogpt::mm / mm_backward). The reference is written here from the OCP FP8 spec
// (OFP8 formats v1.0: E4M3 with bias 7, no infinities, S.1111.111 = NaN; E5M2 with bias
// 15, IEEE-like) in float64: every code decoded, rounding to the nearest decoded value
// with ties to the even code, overflow by IEEE round-to-nearest (a value at or past the
// midpoint between max and the next power step that the format lacks overflows, unless
// the tie goes to an even max). Debian's torch has no float8 dtypes, so torch itself is
// not the reference. There is no CUDA case: the CUDA FP8 head is a separate piece of work.
#include <map>

#include "test_ops_common.h"

namespace speedrun::test {
namespace {

struct Fp8Ref {
  ops::Fp8Kind kind;
  int mantissa_bits;
  int bias;
  bool has_inf;
  std::vector<std::pair<double, int>> values;  // finite non-negative values and their codes, ascending
  double max = 0.0;
  int max_code = 0;
};

// Decodes every code of the format (OCP spec) and keeps the finite non-negative values.
Fp8Ref make_ref(ops::Fp8Kind kind) {
  Fp8Ref r{kind, kind == ops::Fp8Kind::e4m3 ? 3 : 2, kind == ops::Fp8Kind::e4m3 ? 7 : 15,
           kind == ops::Fp8Kind::e5m2, {}};
  const int mb = r.mantissa_bits, eb = 7 - mb;
  for (int code = 0; code < 128; ++code) {  // sign bit 0
    const int e = code >> mb, m = code & ((1 << mb) - 1);
    const int top = (1 << eb) - 1;
    if (kind == ops::Fp8Kind::e4m3 && e == top && m == (1 << mb) - 1) continue;  // NaN
    if (kind == ops::Fp8Kind::e5m2 && e == top) continue;                           // inf, NaN
    const double v = e == 0 ? std::ldexp(static_cast<double>(m), 1 - r.bias - mb)
                            : std::ldexp(1.0 + std::ldexp(static_cast<double>(m), -mb), e - r.bias);
    r.values.push_back({v, code});
  }
  std::sort(r.values.begin(), r.values.end());
  r.max = r.values.back().first;
  r.max_code = r.values.back().second;
  return r;
}

double overflow_value(const Fp8Ref& r, bool saturate) {
  if (saturate) return r.max;
  return r.has_inf ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
}

// The float64 reference rounding of q (already the quotient x / scale).
double ref_round(const Fp8Ref& r, double q, bool saturate) {
  if (std::isnan(q)) return q;
  const double a = std::fabs(q);
  double out;
  if (a > r.max) {
    // The first value the format lacks: max + one quantum at max's exponent.
    int e = 0;
    std::frexp(r.max, &e);
    const double next = r.max + std::ldexp(1.0, e - 1 - r.mantissa_bits);
    const double mid = (r.max + next) / 2;
    const bool to_max = a < mid || (a == mid && (r.max_code & 1) == 0);
    out = to_max ? r.max : overflow_value(r, saturate);
  } else {
    auto hi = std::lower_bound(r.values.begin(), r.values.end(), std::make_pair(a, -1));
    if (hi->first == a) {
      out = a;
    } else {
      auto lo = hi - 1;
      const double dlo = a - lo->first, dhi = hi->first - a;
      if (dlo < dhi) out = lo->first;
      else if (dhi < dlo) out = hi->first;
      else out = (lo->second & 1) == 0 ? lo->first : hi->first;
    }
  }
  return std::copysign(out, q);
}

float op_round(float x, double scale, ops::Fp8Kind kind, bool saturate) {
  std::vector<float> in = {x}, out(1);
  ops::fp8_round(view(out, {1}), view(in, {1}), scale, kind, saturate);
  return out[0];
}

bool same(double a, double b) {  // equal, NaN equal to NaN, zeros by sign
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

class OpsFp8 : public OpsTest {};

// Every representable value maps to itself, every midpoint between neighbours to the
// even code, and the f32 values just either side of it to the nearer neighbour; for both
// signs and both formats (e4m3: 127 finite non-negative values with 0, e5m2: 124).
TEST_F(OpsFp8, EveryValueAndEveryBoundary) {
  for (ops::Fp8Kind kind : {ops::Fp8Kind::e4m3, ops::Fp8Kind::e5m2}) {
    const Fp8Ref r = make_ref(kind);
    ASSERT_EQ(r.values.size(), kind == ops::Fp8Kind::e4m3 ? 127u : 124u);  // with +0
    EXPECT_EQ(r.max, kind == ops::Fp8Kind::e4m3 ? 448.0 : 57344.0);
    int checked = 0;
    for (double sign : {1.0, -1.0}) {
      for (size_t i = 0; i + 1 < r.values.size(); ++i) {
        const double a = r.values[i].first, b = r.values[i + 1].first;
        const float mid = static_cast<float>((a + b) / 2);
        ASSERT_EQ(static_cast<double>(mid), (a + b) / 2);  // midpoints are f32 values
        const double even = (r.values[i].second & 1) == 0 ? a : b;
        const std::vector<std::pair<float, double>> cases = {
            {static_cast<float>(a), a},
            {static_cast<float>(b), b},
            {mid, even},
            {std::nextafter(mid, 0.0f), a},
            {std::nextafter(mid, 1e30f), b}};
        for (auto [x, want] : cases) {
          for (bool saturate : {true, false}) {
            const float got = op_round(static_cast<float>(sign) * x, 1.0, kind, saturate);
            ASSERT_TRUE(same(got, sign * want)) << "x " << sign * x << " got " << got << " want " << sign * want;
            ASSERT_TRUE(same(got, ref_round(r, sign * static_cast<double>(x), saturate)));
          }
          ++checked;
        }
      }
    }
    EXPECT_GT(checked, 1200);
  }
}

// Overflow, infinities, NaN and zeros, expected values stated.
TEST_F(OpsFp8, OverflowInfinityNanAndZeros) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  using K = ops::Fp8Kind;
  struct Case {
    K kind;
    float x;
    bool saturate;
    double want;
  };
  const double dnan = std::nan("");
  const std::vector<Case> cases = {
      // e4m3: 448 is the max; 464 (midpoint to the missing 480) ties to 448 (mantissa 110, even).
      {K::e4m3, 464.0f, false, 448.0},
      {K::e4m3, std::nextafter(464.0f, 1e9f), false, dnan},  // torch eager: NaN (c10 0x7F)
      {K::e4m3, std::nextafter(464.0f, 1e9f), true, 448.0},  // satfinite
      {K::e4m3, 480.0f, false, dnan},
      {K::e4m3, -1e6f, true, -448.0},
      {K::e4m3, inf, false, dnan},
      {K::e4m3, -inf, true, -448.0},
      {K::e4m3, nan, true, dnan},
      // e4m3 subnormals: the smallest is 2^-9; half of it ties to 0 (even), above rounds up.
      {K::e4m3, 0x1p-10f, true, 0.0},
      {K::e4m3, std::nextafter(0x1p-10f, 1.0f), true, 0x1p-9},
      {K::e4m3, -0x1p-11f, false, -0.0},
      {K::e4m3, 3 * 0x1p-10f, true, 0x1p-8},  // 1.5 quanta: tie to the even 2 quanta
      {K::e4m3, -0.0f, true, -0.0},
      // e5m2: 57344 is the max (mantissa 11, odd): its midpoint to 65536 rounds up, overflowing.
      {K::e5m2, 61440.0f, false, std::numeric_limits<double>::infinity()},
      {K::e5m2, 61440.0f, true, 57344.0},
      {K::e5m2, std::nextafter(61440.0f, 0.0f), false, 57344.0},
      {K::e5m2, -inf, false, -std::numeric_limits<double>::infinity()},
      {K::e5m2, inf, true, 57344.0},
      {K::e5m2, nan, false, dnan},
      {K::e5m2, 0x1p-17f, false, 0.0},    // half the smallest subnormal 2^-16: tie to 0
      {K::e5m2, 0x1p-16f * 1.5f, false, 0x1p-15},  // tie between 1 and 2 quanta: to 2 (even)
  };
  for (const Case& c : cases) {
    const float got = op_round(c.x, 1.0, c.kind, c.saturate);
    EXPECT_TRUE(same(got, c.want)) << (c.kind == K::e4m3 ? "e4m3 " : "e5m2 ") << c.x << " saturate " << c.saturate
                                   << ": got " << got << ", want " << c.want;
    EXPECT_TRUE(same(got, ref_round(make_ref(c.kind), c.x, c.saturate)));
  }
}

// Fresh random values over the whole range (below the smallest subnormal to beyond the
// max), divided by random scales in f32 as the op's contract says, against the reference.
TEST_F(OpsFp8, RandomValuesAndScales) {
  for (ops::Fp8Kind kind : {ops::Fp8Kind::e4m3, ops::Fp8Kind::e5m2}) {
    const Fp8Ref r = make_ref(kind);
    const double lo = kind == ops::Fp8Kind::e4m3 ? -12 : -19, hi = kind == ops::Fp8Kind::e4m3 ? 10 : 17;
    std::uniform_real_distribution<double> log2mag(lo, hi), log2scale(-8, 8);
    std::bernoulli_distribution neg(0.5);
    const int64_t n = 20000;
    std::vector<float> x(n), out(n);
    for (bool saturate : {true, false}) {
      const double scale = static_cast<float>(std::exp2(log2scale(rng_)));
      for (auto& v : x) v = static_cast<float>((neg(rng_) ? -1 : 1) * std::exp2(log2mag(rng_)) * scale);
      ops::fp8_round(view(out, {100, 200}), view(x, {100, 200}), scale, kind, saturate);
      int mismatches = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float q = x[i] / static_cast<float>(scale);  // the quotient in f32
        if (!same(out[i], ref_round(r, q, saturate)) && ++mismatches < 5)
          ADD_FAILURE() << "x " << x[i] << " / " << scale << ": got " << out[i] << ", want " << ref_round(r, q, saturate);
      }
      EXPECT_EQ(mismatches, 0);
    }
  }
}

TEST_F(OpsFp8, RejectsBadArguments) {
  std::vector<float> x(6, 1.0f), out(6), short_out(5);
  std::vector<double> wide(6);
  EXPECT_INVALID_ARGUMENT(ops::fp8_round(view(short_out, {5}), view(x, {6}), 1.0, ops::Fp8Kind::e4m3, true),
                          "fp8_round", "out");
  EXPECT_INVALID_ARGUMENT(ops::fp8_round(view(wide, {6}), view(x, {6}), 1.0, ops::Fp8Kind::e4m3, true), "fp8_round",
                          "out");
  EXPECT_INVALID_ARGUMENT(ops::fp8_round(view(out, {6}), view(x, {6}), 0.0, ops::Fp8Kind::e4m3, true), "fp8_round",
                          "scale");
  EXPECT_INVALID_ARGUMENT(ops::fp8_round(view(out, {6}), view(x, {6}), -2.0, ops::Fp8Kind::e5m2, true),
                          "fp8_round", "scale");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::fp8_round(on_cuda(view(out, {6})), on_cuda(view(x, {6})), 1.0, ops::Fp8Kind::e4m3,
                                             true),
                              "fp8_round");
  std::vector<float> w(12), y(12), xq(6), wq(12);
  const ops::Fp8HeadScales s{1.0, 1.0, 1.0, true};
  EXPECT_INVALID_ARGUMENT(
      ops::fp8_head_forward(view(y, {3, 4}), view(xq, {3, 2}), view(wq, {4, 3}), view(x, {3, 2}), view(w, {4, 3}), s),
      "fp8_head_forward", "x");
  EXPECT_INVALID_ARGUMENT(ops::fp8_head_forward(view(y, {3, 4}), view(xq, {3, 2}), view(wq, {6, 2}), view(x, {3, 2}),
                                                view(w, {6, 2}), s),
                          "fp8_head_forward", "y");
}

// bf16 round to nearest even from double, written here (not the op's helper): the
// nearest of the two bf16 neighbours of float(v), ties to the even significand.
double ref_bf16(double v) {
  const float f = static_cast<float>(v);
  if (f == 0.0f || !std::isfinite(f)) return f;
  int e = 0;
  std::frexp(static_cast<double>(f), &e);
  const double quantum = std::ldexp(1.0, e - 8);  // bf16 keeps 8 significant bits
  return std::nearbyint(static_cast<double>(f) / quantum) * quantum;
}
double bf16_ulp(double v) {
  int e = 0;
  std::frexp(v, &e);
  return std::ldexp(1.0, e - 8);
}

// The head product against a float64 emulation written here: xq, wq, g rounded by the
// reference, the three products summed in double, scaled in double and rounded to bf16
// (y, dx) or kept (dw). Tolerance: the op sums in f32 (BLAS), so each entry may differ by
// the f32 summation bound K * 2^-24 * sum|terms| (K terms), and a bf16 result by one bf16
// ulp more where that error moves it across a rounding boundary. Shapes: several tokens,
// the real record #26 scales with d = 64 (x_s = sqrt(64)/448).
TEST_F(OpsFp8, HeadForwardBackwardMatchFloat64Emulation) {
  const Fp8Ref e4 = make_ref(ops::Fp8Kind::e4m3), e5 = make_ref(ops::Fp8Kind::e5m2);
  const int64_t n = 37, c = 64, v = 91;
  const ops::Fp8HeadScales s{std::sqrt(64.0) / 448, 24.0 / 448, 1.0 / 448, true};
  // x like an RMS-normed hidden (entries up to sqrt(c)), w uniform, dy with magnitudes
  // from 1e-9 (e5m2 subnormals and zeros after / grad_s) to 1e-1.
  std::vector<float> x = cast<float>(uniform(n * c, -3.0, 3.0)), w = cast<float>(uniform(v * c, -1.5, 1.5));
  std::vector<float> dy(n * v);
  {
    std::uniform_real_distribution<double> l(std::log(1e-9), std::log(1e-1));
    std::bernoulli_distribution neg(0.5);
    for (auto& d : dy) d = static_cast<float>((neg(rng_) ? -1 : 1) * std::exp(l(rng_)));
  }
  std::vector<float> y(n * v), xq(n * c), wq(v * c), dx(n * c), dw = cast<float>(uniform(v * c));
  const std::vector<float> dw0 = dw;
  ops::fp8_head_forward(view(y, {n, v}), view(xq, {n, c}), view(wq, {v, c}), view(x, {n, c}), view(w, {v, c}), s);
  ops::fp8_head_backward(view(dx, {n, c}), view(dw, {v, c}), view(dy, {n, v}), view(xq, {n, c}), view(wq, {v, c}), s,
                         false);

  // The saved operands: exactly the reference rounding of the f32 quotients.
  std::vector<double> rxq(n * c), rwq(v * c), rg(n * v);
  for (int64_t i = 0; i < n * c; ++i) {
    rxq[i] = ref_round(e4, x[i] / static_cast<float>(s.x_s), true);
    ASSERT_EQ(xq[i], rxq[i]) << i;
  }
  for (int64_t i = 0; i < v * c; ++i) {
    rwq[i] = ref_round(e4, w[i] / static_cast<float>(s.w_s), true);
    ASSERT_EQ(wq[i], rwq[i]) << i;
  }
  int zeros = 0;
  for (int64_t i = 0; i < n * v; ++i) {
    rg[i] = ref_round(e5, static_cast<float>(ref_bf16(dy[i])) / static_cast<float>(s.grad_s), true);
    zeros += rg[i] == 0.0;
  }
  EXPECT_GT(zeros, 0);  // some gradients underflow e5m2, as upstream's do

  int y_exact = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < v; ++j) {
      double acc = 0, mag = 0;
      for (int64_t k = 0; k < c; ++k) acc += rxq[i * c + k] * rwq[j * c + k], mag += std::fabs(rxq[i * c + k] * rwq[j * c + k]);
      const double want = ref_bf16(acc * s.x_s * s.w_s);
      const double tol = bf16_ulp(std::fabs(want)) + c * 0x1p-24 * mag * s.x_s * s.w_s;
      ASSERT_NEAR(y[i * v + j], want, tol) << "y[" << i << "," << j << "]";
      y_exact += y[i * v + j] == want;
    }
  EXPECT_GT(y_exact, n * v * 9 / 10);  // mostly bitwise: the f32 sums are exact but for rare ties
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k) {
      double acc = 0, mag = 0;
      for (int64_t j = 0; j < v; ++j) acc += rg[i * v + j] * rwq[j * c + k], mag += std::fabs(rg[i * v + j] * rwq[j * c + k]);
      const double want = ref_bf16(acc * s.grad_s * s.w_s);
      ASSERT_NEAR(dx[i * c + k], want, bf16_ulp(std::fabs(want)) + v * 0x1p-24 * mag * s.grad_s * s.w_s)
          << "dx[" << i << "," << k << "]";
    }
  for (int64_t j = 0; j < v; ++j)
    for (int64_t k = 0; k < c; ++k) {
      double acc = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) acc += rg[i * v + j] * rxq[i * c + k], mag += std::fabs(rg[i * v + j] * rxq[i * c + k]);
      const double want = dw0[j * c + k] + acc * s.x_s * s.grad_s;  // accumulated onto dw
      const double tol = (n + 2) * 0x1p-24 * (mag * s.x_s * s.grad_s + std::fabs(dw0[j * c + k]));
      ASSERT_NEAR(dw[j * c + k], want, tol) << "dw[" << j << "," << k << "]";
    }

  // accumulate_dx adds the same bf16 values onto what dx held.
  std::vector<float> dx2 = dx;
  ops::fp8_head_backward(view(dx2, {n, c}), {}, view(dy, {n, v}), view(xq, {n, c}), view(wq, {v, c}), s, true);
  for (int64_t i = 0; i < n * c; ++i) ASSERT_EQ(dx2[i], dx[i] + dx[i]);

  // Negative control: the plain f32 product differs from the FP8 one by far more than the
  // tolerances above (e4m3 keeps 4 significant bits: errors of several percent).
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < v; ++j) {
      double plain = 0;
      for (int64_t k = 0; k < c; ++k) plain += static_cast<double>(x[i * c + k]) * w[j * c + k];
      worst = std::max(worst, std::fabs(plain - y[i * v + j]) / (std::fabs(plain) + 1.0));
    }
  EXPECT_GT(worst, 1e-2);
}

}  // namespace
}  // namespace speedrun::test
