// Scaled sums and whole-tensor dot products (ops.h, "scaled sums"): record26's learned
// scalars multiply whole activations (x = a x + b x0, v = l0 v + l1 ve, skip weights), and
// their gradients are dot products over every element.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops/cpu/reductions.h"

namespace speedrun::ops::cpu {

// out = alpha x + beta y (y null: out = alpha x). Elementwise, so any schedule gives the same result.
template <class T>
void scaled_sum(T* out, T alpha, const T* x, T beta, const T* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = y ? alpha * x[i] + beta * y[i] : alpha * x[i];
}

// sum_i x[i] y[i] in double: fixed chunks of kDotChunk elements (each a lane-split dot in
// double), their partial sums added in chunk order, so the result does not depend on threads.
inline constexpr int64_t kDotChunk = 4096;

template <class T>
double dot_all(const T* x, const T* y, int64_t n) {
  const int64_t chunks = (n + kDotChunk - 1) / kDotChunk;
  double total = 0.0;
  // Partials per chunk, summed in order afterwards.
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kDotChunk, i1 = std::min(n, i0 + kDotChunk);
    double lane[kLanes] = {};
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lane[j] += static_cast<double>(x[i + j]) * static_cast<double>(y[i + j]);
    for (int j = 0; i < i1; ++i, ++j) lane[j] += static_cast<double>(x[i]) * static_cast<double>(y[i]);
    partial[static_cast<size_t>(c)] = combine_lanes(lane);
  }
  for (double p : partial) total += p;
  return total;
}

}  // namespace speedrun::ops::cpu
