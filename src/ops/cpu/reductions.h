// Building blocks shared by the CPU ops: dot products and column sums whose results do not
// depend on the number of OpenMP threads.
//
// Why lanes: without -ffast-math the compiler may not reorder a floating-point sum, so a
// single running sum neither vectorises nor is very accurate. kLanes independent partial
// sums, combined in a fixed order at the end, vectorise (the lanes map onto SIMD registers)
// and cut the rounding error by about kLanes; the order is part of the definition of the
// result, so it is the same on every call and every thread.
#pragma once

#include <algorithm>
#include <cstdint>

namespace speedrun::ops::cpu {

inline constexpr int kLanes = 8;

template <class T>
T combine_lanes(const T (&lane)[kLanes]) {
  return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
}

// sum_i a[i] * b[i]
template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] += a[i + j] * b[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) lane[j] += a[i] * b[i];
  return combine_lanes(lane);
}

// sum_i (a[i] * b[i]) * c[i]
template <class T>
T dot3(const T* a, const T* b, const T* c, int64_t n) {
  T lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] += (a[i + j] * b[i + j]) * c[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) lane[j] += (a[i] * b[i]) * c[i];
  return combine_lanes(lane);
}

// y[i] += alpha * x[i]
template <class T>
void axpy(T* y, T alpha, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Work below this many elements runs on one thread: forking a team costs more than it saves.
// (An `if` clause changes only who computes, never what is computed.)
inline constexpr int64_t kParallelThreshold = 1 << 15;

// Column sums over many rows, the reduction behind db, dgains and the embedding backward:
//   acc[c] += sum_{r < rows} value(r, c)   for c < cols.
// The partition is fixed, independent of the thread count: the columns are cut into chunks
// of kColumnChunk, each chunk is one task; inside a chunk the rows are summed in blocks of
// kRowBlock rows (rows in order into a block partial, partials in block order into the
// chunk total), and the total is added to acc once. This two-level order also keeps the
// rounding error near (kRowBlock + rows / kRowBlock) ulps instead of `rows` ulps.
inline constexpr int64_t kColumnChunk = 64;
inline constexpr int64_t kRowBlock = 64;

template <class T, class ValueFn>
void add_column_sums(T* acc, int64_t rows, int64_t cols, ValueFn value) {
  const int64_t chunks = (cols + kColumnChunk - 1) / kColumnChunk;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelThreshold)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t c0 = chunk * kColumnChunk;
    const int64_t width = std::min(kColumnChunk, cols - c0);
    T total[kColumnChunk] = {};
    for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
      const int64_t r1 = std::min(rows, r0 + kRowBlock);
      T partial[kColumnChunk] = {};
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = 0; c < width; ++c) partial[c] += value(r, c0 + c);
      }
      for (int64_t c = 0; c < width; ++c) total[c] += partial[c];
    }
    for (int64_t c = 0; c < width; ++c) acc[c0 + c] += total[c];
  }
}

}  // namespace speedrun::ops::cpu
