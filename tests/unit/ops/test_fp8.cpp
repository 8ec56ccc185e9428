// ops::fp8_round and the FP8 head emulation (ops.h, "FP8 emulation"; record #26's
// nanogpt::mm / mm_backward). The reference is written here from the OCP FP8 spec
// (OFP8 formats v1.0: E4M3 with bias 7, no infinities, S.1111.111 = NaN; E5M2 with bias
// 15, IEEE-like) in float64: every code decoded, rounding to the nearest decoded value
// with ties to the even code, overflow by IEEE round-to-nearest (a value at or past the
// midpoint between max and the next power step that the format lacks overflows, unless
// the tie goes to an even max). Debian's torch has no float8 dtypes, so torch itself is
// not the reference. The CUDA cases (CudaOpsTest.Fp8Head*, kernels/ops/fp8_head.cu, never run
// on a GPU yet) compare the device with the CPU emulation, whose own tests come first.
#include <map>

#include "cuda_op_case.h"
#include "ops/cpu/fp8.h"
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

// --- CUDA (kernels/ops/fp8_head.cu) against the CPU emulation ---------------------------------

// The value of each of the 256 codes of a format (OCP spec; NaN codes NaN), for reading the
// device's FP8 bytes.
std::vector<double> decode_table(ops::Fp8Kind kind) {
  const Fp8Ref r = make_ref(kind);
  std::vector<double> t(256, std::nan(""));
  for (const auto& [v, code] : r.values) {
    t[static_cast<size_t>(code)] = v;
    t[static_cast<size_t>(code | 0x80)] = -v;
  }
  if (kind == ops::Fp8Kind::e5m2) {
    t[0x7C] = std::numeric_limits<double>::infinity();
    t[0xFC] = -std::numeric_limits<double>::infinity();
  }
  return t;
}

// n FP8 bytes on the device.
struct DevFp8 {
  Buffer buf;
  DType kind;
  int64_t n;
  DevFp8(DType k, int64_t count) : buf(Device::cuda, static_cast<size_t>(std::max<int64_t>(count, 1))), kind(k), n(count) {
    std::vector<uint8_t> poison(static_cast<size_t>(count), 0x7F);  // NaN in both formats
    device_copy(buf.data(), poison.data(), poison.size());
  }
  Tensor t(std::initializer_list<int64_t> shape) const { return Tensor(buf.data(), kind, Device::cuda, shape); }
  std::vector<double> read() const {
    std::vector<uint8_t> bytes(static_cast<size_t>(n));
    device_copy(bytes.data(), buf.data(), bytes.size());
    const std::vector<double> table = decode_table(kind == DType::e4m3 ? ops::Fp8Kind::e4m3 : ops::Fp8Kind::e5m2);
    std::vector<double> v(bytes.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = table[bytes[i]];
    return v;
  }
};

// The quantization kernel: bitwise the CPU's rounding (the same f32 quotient, one round to
// nearest even, .satfinite), for f32 and bf16 inputs, both formats, values from below the
// smallest subnormal to beyond the max; the transposed copy is the transpose. Shapes that are
// and are not multiples of the kernel's 32 x 32 tile.
CUDA_OP_CASE(Fp8HeadQuantizeBitwiseWithTransposedCopy) {
  for_each_case<2>(kActs, {{1, 1}, {16, 48}, {37, 45}, {64, 200}}, [&](DType t, auto shape) {
    const int64_t rows = shape[0], cols = shape[1];
    for (ops::Fp8Kind kind : {ops::Fp8Kind::e4m3, ops::Fp8Kind::e5m2}) {
      for (bool bf16_first : {false, true}) {
        const float scale = kind == ops::Fp8Kind::e4m3 ? 0.0625f * 0.75f : 1.0f / 448;
        std::uniform_real_distribution<double> log2mag(kind == ops::Fp8Kind::e4m3 ? -13 : -20, 18);
        std::bernoulli_distribution neg(0.5);
        std::vector<float> x(static_cast<size_t>(rows * cols));
        for (auto& v : x) v = static_cast<float>((neg(rng_) ? -1 : 1) * std::exp2(log2mag(rng_)) * scale);
        x = round_to(t, x);
        Dev dx(x, t);
        const DType k = kind == ops::Fp8Kind::e4m3 ? DType::e4m3 : DType::e5m2;
        DevFp8 q(k, rows * cols), qt(k, rows * cols);
        cuda::fp8_quantize(k, q.buf.data(), qt.buf.data(), t, dx.buf.data(), rows, cols, scale, bf16_first);
        const std::vector<double> got = q.read(), got_t = qt.read();
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            const size_t i = static_cast<size_t>(r * cols + c);
            const float in = bf16_first ? ops::cpu::round_to_bf16(x[i]) : x[i];
            const double want = ops::cpu::round_to_fp8(in / scale, ops::cpu::format_of(kind), true);
            ASSERT_TRUE(same(got[i], want)) << "x " << x[i] << ": got " << got[i] << ", want " << want;
            ASSERT_TRUE(same(got_t[static_cast<size_t>(c * rows + r)], got[i])) << "transposed copy at " << r << ", " << c;
          }
      }
    }
  });
}

// Sum of |terms| of each output of y = a b^T (a (m, k), b (n, k) row-major), for the bounds.
std::vector<double> abs_products(const std::vector<double>& a, const std::vector<double>& b, int64_t m, int64_t n,
                                 int64_t k) {
  std::vector<double> out(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l) s += std::fabs(a[i * k + l] * b[j * k + l]);
      out[static_cast<size_t>(i * n + j)] = s;
    }
  return out;
}

// The head's forward and backward on the device against the CPU emulation. The rounded
// operands (xq, wq) must be bitwise equal. The products sum the same exact FP8 products in
// another order and precision: with fast accumulation (the forward) Hopper's FP8 tensor cores
// keep about 14 significant bits in the accumulator between promotions (DeepSeek-V3 technical
// report, section 3.3.2), so a k-term sum can be off by up to (k/32 + 1) 2^-14 of its sum of
// |terms| (one accumulator rounding per 32-deep MMA step); the backward's products are
// promoted to fp32 periodically (fast_accum off) and get the same bound, which is loose for
// them. A bf16 output may also differ by one bf16 ulp where the two sums straddle a rounding
// boundary. dw (f32, accumulated onto random values) gets the bound plus 2^-23 |dw0|.
// Shapes multiples of 16 (cuBLASLt's FP8 rule), one at record #26's width (768).
CUDA_OP_CASE(Fp8HeadForwardBackwardMatchCpu) {
  for_each_case<3>(kActs, {{16, 16, 16}, {48, 64, 80}, {96, 768, 272}}, [&](DType t, auto shape) {
    const int64_t n = shape[0], c = shape[1], v = shape[2];
    const ops::Fp8HeadScales s{std::sqrt(static_cast<double>(c)) / 448, 24.0 / 448, 1.0 / 448, true};
    std::vector<float> x = round_to(t, cast<float>(uniform(n * c, -3.0, 3.0)));
    std::vector<float> w = cast<float>(uniform(v * c, -1.5, 1.5));
    std::vector<float> dy(static_cast<size_t>(n * v));
    std::uniform_real_distribution<double> l(std::log(1e-9), std::log(1e-1));
    std::bernoulli_distribution neg(0.5);
    for (auto& d : dy) d = static_cast<float>((neg(rng_) ? -1 : 1) * std::exp(l(rng_)));
    const std::vector<float> dw0 = cast<float>(uniform(v * c));
    // CPU
    std::vector<float> y(n * v), xq(n * c), wq(v * c), dx(n * c), dw = dw0;
    ops::fp8_head_forward(view(y, {n, v}), view(xq, {n, c}), view(wq, {v, c}), view(x, {n, c}), view(w, {v, c}), s);
    ops::fp8_head_backward(view(dx, {n, c}), view(dw, {v, c}), view(dy, {n, v}), view(xq, {n, c}), view(wq, {v, c}),
                           s, false);
    // Device: x in the activation dtype, w the f32 master, y f32 (bf16 values), dx in the
    // activation dtype, dy f32 (the head's logit buffer).
    Dev gx(x, t), gw(w, DType::f32), gdy(dy, DType::f32), gdw(dw0, DType::f32);
    Dev gy(std::vector<float>(static_cast<size_t>(n * v)), DType::f32), gdx(std::vector<float>(n * c), t);
    gy.poison();
    gdx.poison();
    DevFp8 gxq(DType::e4m3, n * c), gwq(DType::e4m3, v * c), gxqt(DType::e4m3, n * c), gwqt(DType::e4m3, v * c),
        gg(DType::e5m2, n * v), ggt(DType::e5m2, n * v);
    const ops::Fp8HeadCuda cu{gxqt.t({c, n}), gwqt.t({c, v}), gg.t({n, v}), ggt.t({v, n})};
    ops::fp8_head_forward(gy.t({n, v}), gxq.t({n, c}), gwq.t({v, c}), gx.t({n, c}), gw.t({v, c}), s, cu);
    ops::fp8_head_backward(gdx.t({n, c}), gdw.t({v, c}), gdy.t({n, v}), gxq.t({n, c}), gwq.t({v, c}), s, false, cu);
    const std::vector<double> dxq = gxq.read(), dwq = gwq.read();
    for (int64_t i = 0; i < n * c; ++i) ASSERT_EQ(dxq[i], xq[i]) << "xq " << i;
    for (int64_t i = 0; i < v * c; ++i) ASSERT_EQ(dwq[i], wq[i]) << "wq " << i;
    std::vector<double> g(static_cast<size_t>(n * v)), gT(static_cast<size_t>(n * v)), wqT(static_cast<size_t>(v * c)),
        xqT(static_cast<size_t>(n * c));
    for (int64_t i = 0; i < n * v; ++i)
      g[i] = ops::cpu::round_to_fp8(ops::cpu::round_to_bf16(dy[i]) / static_cast<float>(s.grad_s), ops::cpu::kE5M2, true);
    const std::vector<double> dg = gg.read();
    for (int64_t i = 0; i < n * v; ++i) ASSERT_TRUE(same(dg[i], g[i])) << "g " << i;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < v; ++j) gT[j * n + i] = g[i * v + j];
    for (int64_t j = 0; j < v; ++j)
      for (int64_t k = 0; k < c; ++k) wqT[k * v + j] = wq[j * c + k];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < c; ++k) xqT[k * n + i] = xq[i * c + k];
    const float fs = static_cast<float>(s.x_s) * static_cast<float>(s.w_s);
    const float bs = static_cast<float>(s.grad_s) * static_cast<float>(s.w_s);
    const float ws = static_cast<float>(s.x_s) * static_cast<float>(s.grad_s);
    auto bound = [](double sum_abs, int64_t k, double factor) { return (k / 32.0 + 1) * 0x1p-14 * sum_abs * factor; };
    const std::vector<double> ay = abs_products(std::vector<double>(xq.begin(), xq.end()),
                                                std::vector<double>(wq.begin(), wq.end()), n, v, c);
    const std::vector<float> gyv = gy.read();
    for (int64_t i = 0; i < n * v; ++i)
      ASSERT_NEAR(gyv[i], y[i], bf16_ulp(std::fabs(y[i])) + bound(ay[i], c, fs)) << "y " << i;
    const std::vector<double> adx = abs_products(g, wqT, n, c, v);
    const std::vector<float> gdxv = gdx.read();
    for (int64_t i = 0; i < n * c; ++i)
      ASSERT_NEAR(gdxv[i], dx[i], bf16_ulp(std::fabs(dx[i])) + bound(adx[i], v, bs)) << "dx " << i;
    const std::vector<double> adw = abs_products(gT, xqT, v, c, n);
    const std::vector<float> gdwv = gdw.read();
    for (int64_t i = 0; i < v * c; ++i)
      ASSERT_NEAR(gdwv[i], dw[i], bound(adw[i], n, ws) + 0x1p-23 * std::fabs(dw0[i])) << "dw " << i;
  });
}

#if SPEEDRUN_HAVE_CUDA
// The shape rule is checked before any device work (so this runs without a device): a
// dimension that is not a multiple of 16 is refused naming it.
TEST_F(OpsFp8, CudaHeadRefusesShapesCuBlasLtCannotTake) {
  std::vector<uint8_t> bytes(64 * 64);
  std::vector<float> f(64 * 64);
  auto fp8 = [&](DType k, std::initializer_list<int64_t> shape) { return Tensor(bytes.data(), k, Device::cuda, shape); };
  auto f32 = [&](std::initializer_list<int64_t> shape) { return Tensor(f.data(), DType::f32, Device::cuda, shape); };
  const ops::Fp8HeadScales s{1.0, 1.0, 1.0, true};
  EXPECT_INVALID_ARGUMENT(ops::fp8_head_forward(f32({24, 32}), fp8(DType::e4m3, {24, 16}), fp8(DType::e4m3, {32, 16}),
                                                f32({24, 16}), f32({32, 16}), s,
                                                {fp8(DType::e4m3, {16, 24}), fp8(DType::e4m3, {16, 32}), {}, {}}),
                          "fp8_head_forward", "multiple of 16", "rows N is 24");
  EXPECT_INVALID_ARGUMENT(ops::fp8_head_backward(f32({16, 16}), f32({40, 16}), f32({16, 40}), fp8(DType::e4m3, {16, 16}),
                                                 fp8(DType::e4m3, {40, 16}), s, false,
                                                 {fp8(DType::e4m3, {16, 16}), fp8(DType::e4m3, {16, 40}),
                                                  fp8(DType::e5m2, {16, 40}), fp8(DType::e5m2, {40, 16})}),
                          "fp8_head_backward", "vocabulary V is 40");
  // The transposed copies are required on CUDA, with their shapes.
  EXPECT_INVALID_ARGUMENT(ops::fp8_head_forward(f32({16, 32}), fp8(DType::e4m3, {16, 16}), fp8(DType::e4m3, {32, 16}),
                                                f32({16, 16}), f32({32, 16}), s),
                          "fp8_head_forward", "cuda.xqt");
  // xq must be FP8 storage on CUDA.
  EXPECT_INVALID_ARGUMENT(ops::fp8_head_forward(f32({16, 32}), f32({16, 16}), fp8(DType::e4m3, {32, 16}), f32({16, 16}),
                                                f32({32, 16}), s,
                                                {fp8(DType::e4m3, {16, 16}), fp8(DType::e4m3, {16, 32}), {}, {}}),
                          "fp8_head_forward", "xq", "e4m3");
}
#endif

}  // namespace
}  // namespace speedrun::test
