// Logit soft caps on the device, the same formulas and operation order as the CPU's
// (src/ops/cpu/softcap.h), in fp32:
//   algebraic  s = (c z) (1 / sqrt(z^2 + c^2))   s' = (c r)^3, r = 1 / sqrt(z^2 + c^2); |z| clamped to 1e18
//   sigmoid    s = c sigmoid(z / den)             s' = (c / den) e q^2, e = exp(-|u|), q = 1 / (1 + e)
//   none       s = z                              s' = 1
// The fast_* forms are the same formulas with the hardware's approximate instructions
// (rsqrtf, __expf, __fdividef; a few ulp of fp32), for the one-pass cross-entropy of the fused
// head, whose inputs are bf16 logits (2^-9 relative) and whose per-element work would
// otherwise bound it by compute rather than memory (the IEEE division and square root are
// ~10 instructions each, and run twice per logit).
#pragma once

#include "kernels/runtime/common.cuh"
#include "core/softcap.h"

namespace speedrun::cuda {

struct DeviceNoCap {
  __device__ float value(float z) const { return z; }
  __device__ void value_and_slope(float z, float& s, float& slope) const {
    s = z;
    slope = 1.0f;
  }
  __device__ float fast_value(float z) const { return z; }
  __device__ void fast_value_and_slope(float z, float& s, float& slope) const { value_and_slope(z, s, slope); }
};

struct DeviceAlgebraicCap {
  float c, c_squared;
  static constexpr float kLargest = 1e18f;  // see AlgebraicCap::kLargest (NaN passes through)
  __device__ static float clamped(float z) { return z > kLargest ? kLargest : (z < -kLargest ? -kLargest : z); }
  __device__ float value(float z) const {
    z = clamped(z);
    return (c * z) * (1.0f / sqrtf(z * z + c_squared));
  }
  __device__ void value_and_slope(float z, float& s, float& slope) const {
    z = clamped(z);
    const float r = 1.0f / sqrtf(z * z + c_squared);
    s = (c * z) * r;
    const float cr = c * r;
    slope = cr * cr * cr;
  }
  __device__ float fast_value(float z) const {
    z = clamped(z);
    return (c * z) * rsqrtf(z * z + c_squared);
  }
  __device__ void fast_value_and_slope(float z, float& s, float& slope) const {
    z = clamped(z);
    const float r = rsqrtf(z * z + c_squared);
    s = (c * z) * r;
    const float cr = c * r;
    slope = cr * cr * cr;
  }
};

struct DeviceSigmoidCap {
  float c, den, c_over_den, inv_den;
  __device__ float value(float z) const {
    const float u = z / den;
    const float e = expf(-fabsf(u));
    const float q = 1.0f / (1.0f + e);
    return c * (u >= 0.0f ? q : e * q);
  }
  __device__ void value_and_slope(float z, float& s, float& slope) const {
    const float u = z / den;
    const float e = expf(-fabsf(u));
    const float q = 1.0f / (1.0f + e);
    s = c * (u >= 0.0f ? q : e * q);
    slope = c_over_den * (e * q * q);
  }
  __device__ float fast_value(float z) const {
    const float u = z * inv_den;
    const float e = __expf(-fabsf(u));
    const float q = __fdividef(1.0f, 1.0f + e);
    return c * (u >= 0.0f ? q : e * q);
  }
  __device__ void fast_value_and_slope(float z, float& s, float& slope) const {
    const float u = z * inv_den;
    const float e = __expf(-fabsf(u));
    const float q = __fdividef(1.0f, 1.0f + e);
    s = c * (u >= 0.0f ? q : e * q);
    slope = c_over_den * (e * q * q);
  }
};

// Host side: calls fn(cap) with the device cap object for cap.kind (parameters rounded to
// fp32 the way the CPU's float instantiation rounds them).
template <class Fn>
void with_device_softcap(const SoftCap& cap, Fn&& fn) {
  switch (cap.kind) {
    case SoftCap::Kind::none: fn(DeviceNoCap{}); return;
    case SoftCap::Kind::algebraic: {
      const float c = static_cast<float>(cap.cap);
      fn(DeviceAlgebraicCap{c, c * c});
      return;
    }
    case SoftCap::Kind::sigmoid: {
      const float c = static_cast<float>(cap.cap), den = static_cast<float>(cap.denominator);
      fn(DeviceSigmoidCap{c, den, c / den, 1.0f / den});
      return;
    }
  }
}

}  // namespace speedrun::cuda
