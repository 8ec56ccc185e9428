// RMSNorm over the last dimension, with optional gains. QK-norm is the same op without
// gains over rows of head_dim.
//   y = x * r * g,   r = 1 / sqrt(mean(x^2) + eps)
#pragma once

#include <cmath>
#include <cstdint>

#include "ops/cpu/reductions.h"

namespace speedrun::ops::cpu {

// out may alias x: each row's rstd is computed before the row is written.
// gains may be null (no gains).
template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* gains, int64_t rows, int64_t channels, T eps) {
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelThreshold)
  for (int64_t n = 0; n < rows; ++n) {
    const T* xr = x + n * channels;
    T* yr = out + n * channels;
    // mean as sum / C, and 1 / sqrt, as torch's rms_norm does.
    const T r = T(1) / std::sqrt(dot(xr, xr, channels) / static_cast<T>(channels) + eps);
    rstd[n] = r;
    if (gains) {
      for (int64_t c = 0; c < channels; ++c) yr[c] = (xr[c] * r) * gains[c];
    } else {
      for (int64_t c = 0; c < channels; ++c) yr[c] = xr[c] * r;
    }
  }
}

// With u = dout * g (u = dout without gains) and r = rstd[n]:
//   dx = r u - r^3 x (u . x) / C          written, or added when accumulate_dx
//   dgains[c] += sum_n dout[n,c] (x[n,c] r[n])  when dgains is not null
// dx may be null (no input gradient wanted). dgains is reduced first, so dx may alias dout
// (or x) in the non-accumulating case: a row of dx is written only after that row's u . x.
template <class T>
void rmsnorm_backward(T* dx, T* dgains, const T* dout, const T* x, const T* gains, const T* rstd, int64_t rows,
                      int64_t channels, bool accumulate_dx) {
  if (dgains) {
    add_column_sums(dgains, rows, channels, [&](int64_t n, int64_t c) {
      return dout[n * channels + c] * (x[n * channels + c] * rstd[n]);
    });
  }
  if (!dx) return;
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelThreshold)
  for (int64_t n = 0; n < rows; ++n) {
    const T* dy = dout + n * channels;
    const T* xr = x + n * channels;
    T* dxr = dx + n * channels;
    const T r = rstd[n];
    const T ux = gains ? dot3(dy, gains, xr, channels) : dot(dy, xr, channels);
    const T k = (r * r * r) * (ux / static_cast<T>(channels));
    if (gains) {
      if (accumulate_dx) {
        for (int64_t c = 0; c < channels; ++c) dxr[c] += r * (dy[c] * gains[c]) - k * xr[c];
      } else {
        for (int64_t c = 0; c < channels; ++c) dxr[c] = r * (dy[c] * gains[c]) - k * xr[c];
      }
    } else {
      if (accumulate_dx) {
        for (int64_t c = 0; c < channels; ++c) dxr[c] += r * dy[c] - k * xr[c];
      } else {
        for (int64_t c = 0; c < channels; ++c) dxr[c] = r * dy[c] - k * xr[c];
      }
    }
  }
}

}  // namespace speedrun::ops::cpu
