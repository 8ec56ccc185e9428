// Token embedding: a row gather forward, a row scatter-add backward.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ops/cpu/reductions.h"

namespace speedrun::ops::cpu {

// out[n, :] = table[tokens[n], :]. Tokens were range-checked by the caller.
template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int64_t rows, int64_t channels) {
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelThreshold)
  for (int64_t n = 0; n < rows; ++n) {
    std::memcpy(out + n * channels, table + static_cast<int64_t>(tokens[n]) * channels, sizeof(T) * channels);
  }
}

// dtable[tokens[n], :] += dout[n, :].
// Deterministic without atomics: each task owns a chunk of columns of the whole table and
// walks all tokens in order, so every table element receives its additions in token order,
// whatever the number of threads. (Owning vocabulary ranges instead would balance badly:
// token frequencies are very skewed.)
template <class T>
void embedding_backward(T* dtable, const int32_t* tokens, const T* dout, int64_t rows, int64_t channels) {
  const int64_t chunks = (channels + kColumnChunk - 1) / kColumnChunk;
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelThreshold)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t c0 = chunk * kColumnChunk;
    const int64_t width = std::min(kColumnChunk, channels - c0);
    for (int64_t n = 0; n < rows; ++n) {
      T* dst = dtable + static_cast<int64_t>(tokens[n]) * channels + c0;
      const T* src = dout + n * channels + c0;
      for (int64_t c = 0; c < width; ++c) dst[c] += src[c];
    }
  }
}

}  // namespace speedrun::ops::cpu
