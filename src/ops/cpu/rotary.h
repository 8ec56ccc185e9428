// Half-truncated rotary position embedding (Track 3): the pairs (x[j], x[j + D/2]) of each
// head are rotated by theta = t * freq_j; only the first D/4 frequencies are non-zero.
#pragma once

#include <cmath>
#include <cstdint>

#include "ops/cpu/reductions.h"

namespace speedrun::ops::cpu {

// cos, sin (positions, D/2), f32 as upstream:
//   freq_j = (1/base)^(j / (D/4 - 1)) for j < D/4, 0 for D/4 <= j < D/2,
//   theta = t * freq_j,  every step rounded to fp32.
// Upstream builds the exponents with torch.linspace(0, 1, D/4) in fp32; we take
// lin_j = fl(j * fl(1 / (D/4 - 1))), which is bitwise torch 1.13's CPU linspace for D = 128.
// (torch's vectorised linspace differs from that by 1 ulp for some other sizes and CPUs; a
// 1-ulp change of lin_j moves freq_j by < 5e-7 relative.) The power is powf, like torch's
// fp32 pow, and theta = fl(t * freq_j) like torch.outer in fp32.
inline void rotary_tables(float* cos_table, float* sin_table, int64_t positions, int64_t head_dim, double base) {
  const int64_t half = head_dim / 2;
  const int64_t quarter = head_dim / 4;
  const float inv_base = static_cast<float>(1.0 / base);
  const float step = quarter > 1 ? 1.0f / static_cast<float>(quarter - 1) : 0.0f;
  for (int64_t t = 0; t < positions; ++t) {
    for (int64_t j = 0; j < half; ++j) {
      const float freq = j < quarter ? std::pow(inv_base, static_cast<float>(j) * step) : 0.0f;
      const float theta = static_cast<float>(t) * freq;
      cos_table[t * half + j] = std::cos(theta);
      sin_table[t * half + j] = std::sin(theta);
    }
  }
}

// x, out (batch, seq, heads, D); out may alias x (each pair is read before it is written).
//   y1 = x1 cos + x2 sin,   y2 = -x1 sin + x2 cos
template <class T>
void rotary_forward(T* out, const T* x, const float* cos_table, const float* sin_table, int64_t batch, int64_t seq,
                    int64_t heads, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  const int64_t rows = batch * seq * heads;
#pragma omp parallel for schedule(static) if (rows * head_dim >= kParallelThreshold)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t t = (row / heads) % seq;
    const float* cr = cos_table + t * half;
    const float* sr = sin_table + t * half;
    const T* xr = x + row * head_dim;
    T* yr = out + row * head_dim;
    for (int64_t j = 0; j < half; ++j) {
      const T c = cr[j], s = sr[j];
      const T x1 = xr[j], x2 = xr[j + half];
      yr[j] = x1 * c + x2 * s;
      yr[j + half] = x1 * (-s) + x2 * c;
    }
  }
}

// The transpose rotation: dx1 = dy1 cos - dy2 sin, dx2 = dy1 sin + dy2 cos. dx may alias dout.
template <class T>
void rotary_backward(T* dx, const T* dout, const float* cos_table, const float* sin_table, int64_t batch,
                     int64_t seq, int64_t heads, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  const int64_t rows = batch * seq * heads;
#pragma omp parallel for schedule(static) if (rows * head_dim >= kParallelThreshold)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t t = (row / heads) % seq;
    const float* cr = cos_table + t * half;
    const float* sr = sin_table + t * half;
    const T* dyr = dout + row * head_dim;
    T* dxr = dx + row * head_dim;
    for (int64_t j = 0; j < half; ++j) {
      const T c = cr[j], s = sr[j];
      const T dy1 = dyr[j], dy2 = dyr[j + half];
      dxr[j] = dy1 * c - dy2 * s;
      dxr[j + half] = dy1 * s + dy2 * c;
    }
  }
}

}  // namespace speedrun::ops::cpu
