// Soft-capped cross-entropy with SUM reduction, fused with its gradient: the (N, V) logits
// are read once per pass, one row per task, and never stored capped.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "ops/cpu/reductions.h"
#include "ops/cpu/softcap.h"

namespace speedrun::ops::cpu {

// out = softcap(z), elementwise; out may alias z.
template <class T, class Cap>
void softcap_forward(T* out, const T* z, int64_t n, const Cap& cap) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = cap.value(z[i]);
}

// For each row n of z (rows, vocab), with s = softcap(z[n]) and m = max_v s_v:
//   losses[n] = m + log(sum_v exp(s_v - m)) - s_target
//   dz[n, v]  = grad_scale * (softmax(s)_v - [v == target]) * softcap'(z[n, v])   (when dz is not null)
// dz may alias z. Three sweeps over a row that stays in cache (200 KB for V = 50304 in fp32):
//   1. s_v and s'_v into per-thread scratch, and the row max;
//   2. e_v = exp(s_v - m) (kept in the scratch) and their sum, in kLanes partial sums;
//   3. dz_v = grad_scale * (e_v / sum) * s'_v, then the target element gets its -1.
template <class T, class Cap>
void softcap_cross_entropy(T* losses, T* dz, const T* z, const int32_t* targets, int64_t rows, int64_t vocab,
                           const Cap& cap, T grad_scale) {
#pragma omp parallel if (rows * vocab >= kParallelThreshold)
  {
    std::vector<T> capped(static_cast<size_t>(vocab));
    std::vector<T> slope(dz ? static_cast<size_t>(vocab) : 0);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < rows; ++n) {
      const T* zr = z + n * vocab;
      T* s = capped.data();
      T lane_max[kLanes];
      std::fill(lane_max, lane_max + kLanes, -std::numeric_limits<T>::infinity());
      if (dz) {
        for (int64_t v = 0; v < vocab; ++v) cap.value_and_slope(zr[v], s[v], slope[v]);
      } else {
        for (int64_t v = 0; v < vocab; ++v) s[v] = cap.value(zr[v]);
      }
      int64_t v = 0;
      for (; v + kLanes <= vocab; v += kLanes) {
        for (int j = 0; j < kLanes; ++j) lane_max[j] = std::max(lane_max[j], s[v + j]);
      }
      for (int j = 0; v < vocab; ++v, ++j) lane_max[j] = std::max(lane_max[j], s[v]);
      const T m = *std::max_element(lane_max, lane_max + kLanes);

      const int64_t target = targets[n];
      const T s_target = s[target];
      T lane_sum[kLanes] = {};
      v = 0;
      for (; v + kLanes <= vocab; v += kLanes) {
        for (int j = 0; j < kLanes; ++j) {
          const T e = std::exp(s[v + j] - m);
          s[v + j] = e;
          lane_sum[j] += e;
        }
      }
      for (int j = 0; v < vocab; ++v, ++j) {
        const T e = std::exp(s[v] - m);
        s[v] = e;
        lane_sum[j] += e;
      }
      const T sum = combine_lanes(lane_sum);
      losses[n] = (m - s_target) + std::log(sum);

      if (dz) {
        T* dzr = dz + n * vocab;
        for (int64_t u = 0; u < vocab; ++u) dzr[u] = grad_scale * (s[u] / sum) * slope[u];
        dzr[target] = grad_scale * (s[target] / sum - T(1)) * slope[target];
      }
    }
  }
}

}  // namespace speedrun::ops::cpu
