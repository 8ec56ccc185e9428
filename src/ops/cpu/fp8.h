// The FP8 ops on the CPU (ops.h, "FP8 emulation"): rounding f32 to the OCP FP8 formats
// e4m3 (E4M3FN: bias 7, 3 mantissa bits, no infinity, max 448, S.1111.111 is NaN) and
// e5m2 (bias 15, 2 mantissa bits, IEEE-like: max 57344, infinities, NaNs), and record
// #26's FP8 head product built on it. Values stay f32: a rounded value is the f32 holding
// the FP8 value exactly (every FP8 value is an f32).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "ops/ops.h"

namespace speedrun::ops::cpu {

struct Fp8Format {
  int mantissa_bits;
  int bias;
  double max;  // the largest finite value
  bool has_inf;
};
inline constexpr Fp8Format kE4M3{3, 7, 448.0, false};
inline constexpr Fp8Format kE5M2{2, 15, 57344.0, true};
inline const Fp8Format& format_of(Fp8Kind kind) { return kind == Fp8Kind::e4m3 ? kE4M3 : kE5M2; }

// x rounded to the nearest value of `f`, ties to the even mantissa (round to nearest
// even, as torch's and the hardware's conversions). Subnormals are kept (quantum
// 2^(1 - bias - mantissa_bits) below the smallest normal); a result that would pass `max`
// (a finite x rounding beyond it, or an infinity) is +-max when `saturate`, else NaN for
// e4m3 (it has no infinity) and +-infinity for e5m2. NaN stays NaN; the sign of a zero is
// kept.
inline float round_to_fp8(float x, const Fp8Format& f, bool saturate) {
  if (std::isnan(x)) return x;
  const double a = std::fabs(static_cast<double>(x));
  double r;
  if (std::isinf(a)) {
    r = std::numeric_limits<double>::infinity();
  } else {
    int e = 0;
    std::frexp(a, &e);                                 // a = m 2^e, m in [0.5, 1): floor(log2 a) = e - 1
    const int exponent = std::max(e - 1, 1 - f.bias);  // subnormals share the smallest exponent
    const double quantum = std::ldexp(1.0, exponent - f.mantissa_bits);
    r = std::nearbyint(a / quantum) * quantum;  // a / quantum is exact; nearbyint rounds half to even
  }
  if (r > f.max) {
    if (saturate) r = f.max;
    else return f.has_inf ? std::copysign(std::numeric_limits<float>::infinity(), x)
                          : std::numeric_limits<float>::quiet_NaN();
  }
  return static_cast<float>(std::copysign(r, static_cast<double>(x)));
}

// f32 to bf16 and back, round to nearest even (NaN stays NaN).
inline float round_to_bf16(float x) {
  if (std::isnan(x)) return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  u &= 0xFFFF0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

}  // namespace speedrun::ops::cpu
