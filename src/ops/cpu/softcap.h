// Logit soft caps, each as a value and its derivative for one logit z:
//   algebraic  s = c z / sqrt(z^2 + c^2)       s' = c^3 / (z^2 + c^2)^(3/2)   (Track 3, c = 15)
//   sigmoid    s = c sigmoid(z / den)          s' = (c / den) sigmoid (1 - sigmoid)   (record #26)
//   none       s = z                           s' = 1
// The kernels are templated on the cap so that it inlines into their loops.
#pragma once

#include <cmath>

#include "ops/ops.h"

namespace speedrun::ops::cpu {

template <class T>
struct NoCap {
  T value(T z) const { return z; }
  void value_and_slope(T z, T& s, T& slope) const {
    s = z;
    slope = T(1);
  }
};

template <class T>
struct AlgebraicCap {
  T c, c_squared;
  explicit AlgebraicCap(T cap) : c(cap), c_squared(cap * cap) {}
  // |z| beyond this is clamped to it first. Unclamped, z^2 overflows in float for |z| > 1.8e19
  // and the cap returns 0 instead of +-c: a diverged run would show the uniform loss ln(V)
  // instead of a jump. At 1e18 the cap is c to every bit of float and double precision; NaN
  // passes through the clamp unchanged.
  static constexpr T kLargest = T(1e18);
  static T clamped(T z) { return z > kLargest ? kLargest : (z < -kLargest ? -kLargest : z); }
  // Upstream's operation order: (c z) * rsqrt(z^2 + c^2), rsqrt as 1 / sqrt.
  T value(T z) const {
    z = clamped(z);
    return (c * z) * (T(1) / std::sqrt(z * z + c_squared));
  }
  void value_and_slope(T z, T& s, T& slope) const {
    z = clamped(z);
    const T r = T(1) / std::sqrt(z * z + c_squared);
    s = (c * z) * r;
    const T cr = c * r;  // c^3 / (z^2+c^2)^(3/2) = (c r)^3
    slope = cr * cr * cr;
  }
};

template <class T>
struct SigmoidCap {
  T c, den, c_over_den;
  SigmoidCap(T cap, T denominator) : c(cap), den(denominator), c_over_den(cap / denominator) {}
  // With e = exp(-|u|) <= 1 nothing overflows: sigmoid(u) = 1/(1+e) for u >= 0 and e/(1+e)
  // for u < 0, and sigmoid (1 - sigmoid) = e / (1+e)^2 on both sides.
  T value(T z) const {
    const T u = z / den;
    const T e = std::exp(-std::fabs(u));
    const T q = T(1) / (T(1) + e);
    return c * (u >= T(0) ? q : e * q);
  }
  void value_and_slope(T z, T& s, T& slope) const {
    const T u = z / den;
    const T e = std::exp(-std::fabs(u));
    const T q = T(1) / (T(1) + e);
    s = c * (u >= T(0) ? q : e * q);
    slope = c_over_den * (e * q * q);
  }
};

// Calls fn(cap) with the cap object for `cap.kind`.
template <class T, class Fn>
void with_softcap(const SoftCap& cap, Fn&& fn) {
  switch (cap.kind) {
    case SoftCap::Kind::none: fn(NoCap<T>{}); return;
    case SoftCap::Kind::algebraic: fn(AlgebraicCap<T>(static_cast<T>(cap.cap))); return;
    case SoftCap::Kind::sigmoid: fn(SigmoidCap<T>(static_cast<T>(cap.cap), static_cast<T>(cap.denominator))); return;
  }
}

}  // namespace speedrun::ops::cpu
