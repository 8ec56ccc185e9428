// Deterministic column sums over many rows, the reduction behind the bias gradient and
// the RMSNorm gains gradient:  acc[c] += sum_{r < rows} value(r, c).
//
// Two launches, no atomics, a fixed order (so the same inputs give the same bits):
//  1. column_partials: grid (ceil(cols/32), chunks), block (32, 8). Block (bx, by) owns 32
//     consecutive columns (threadIdx.x, so a warp's loads are coalesced along a row) and the
//     rows [by*kRowsPerChunk, ...) of one chunk; thread row ty sums rows ty, ty+8, ... in
//     order, then thread ty = 0 adds the 8 partial sums in order and writes
//     partial[by, c].
//  2. column_finish: one thread per column adds the chunks' partials in chunk order and
//     adds the total to acc[c] once.
// The partials live in cuda::workspace().
#pragma once

#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"

namespace speedrun::cuda {

inline constexpr int kColumnTile = 32;
inline constexpr int kColumnRowsPerThread = 8;  // blockDim.y
inline constexpr int64_t kRowsPerChunk = 256;

template <class Value>
__global__ void column_partials(float* partial, Value value, int64_t rows, int64_t cols) {
  __shared__ float sums[kColumnRowsPerThread][kColumnTile];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kRowsPerChunk;
  const int64_t r1 = r0 + kRowsPerChunk < rows ? r0 + kRowsPerChunk : rows;
  float acc = 0.0f;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColumnRowsPerThread) acc += value(r, c);
  }
  sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.0f;
#pragma unroll
    for (int j = 0; j < kColumnRowsPerThread; ++j) total += sums[j][threadIdx.x];
    partial[static_cast<int64_t>(blockIdx.y) * cols + c] = total;
  }
}

template <int Unused = 0>
__global__ void column_finish(float* acc, const float* partial, int64_t chunks, int64_t cols) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float total = 0.0f;
  for (int64_t k = 0; k < chunks; ++k) total += partial[k * cols + c];
  acc[c] += total;
}

// acc[c] += sum_r value(r, c); value is a trivially copyable functor with a __device__
// float operator()(int64_t r, int64_t c) const.
template <class Value>
void add_column_sums(float* acc, Value value, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t chunks = ceil_div(rows, kRowsPerChunk);
  if (chunks > 65535) throw std::invalid_argument("add_column_sums: too many rows for grid.y");
  float* partial = static_cast<float*>(workspace(static_cast<size_t>(chunks * cols) * sizeof(float)));
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kColumnTile)), static_cast<unsigned>(chunks));
  const dim3 block(kColumnTile, kColumnRowsPerThread);
  column_partials<<<grid, block, 0, stream()>>>(partial, value, rows, cols);
  CUDA_CHECK_LAUNCH();
  column_finish<<<static_cast<unsigned>(ceil_div(cols, 256)), 256, 0, stream()>>>(acc, partial, chunks, cols);
  CUDA_CHECK_LAUNCH();
}

}  // namespace speedrun::cuda
