// Elementwise ops: ReLU^2 and the residual add.
#pragma once

#include <cstdint>

#include "ops/cpu/reductions.h"

namespace speedrun::ops::cpu {

// out = relu(x)^2. out may alias x. NaN propagates (relu(NaN) = NaN, as torch's relu).
template <class T>
void relu2_forward(T* out, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const T r = x[i] < T(0) ? T(0) : x[i];
    out[i] = r * r;
  }
}

// dx = dout * 2 relu(x), masked where x <= 0 like torch's relu backward (so a NaN or inf in
// dout does not leak through inactive units). dx may alias dout.
template <class T>
void relu2_backward(T* dx, const T* dout, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] <= T(0) ? T(0) : dout[i] * (T(2) * x[i]);
}

// g = relu(x)^2 and dx = dout * 2 relu(x) (the two functions above, element by element:
// the same values); g may alias x and dx may alias dout.
template <class T>
void relu2_backward_recompute(T* dx, T* g, const T* dout, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i], d = dout[i];
    const T r = v < T(0) ? T(0) : v;
    g[i] = r * r;
    dx[i] = v <= T(0) ? T(0) : d * (T(2) * v);
  }
}

// out = a + b; out may alias a or b.
template <class T>
void residual_forward(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// dst += dout (one branch of the residual backward).
template <class T>
void accumulate(T* dst, const T* dout, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) dst[i] += dout[i];
}

}  // namespace speedrun::ops::cpu
