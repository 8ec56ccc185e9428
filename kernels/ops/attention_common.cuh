// Pieces shared by the two attention implementations: kernels/ops/attention.cu (fp32 arithmetic
// on the CUDA cores, f32 and bf16) and kernels/ops/attention_tc.cu (bf16 tile products on the
// tensor cores). Everything here is in an unnamed namespace: each file gets its own copy.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/attention_mask.h"

namespace speedrun::cuda {
namespace {

// Which (query t, key s) pairs are allowed, and the tile-loop bounds that follow. The causal
// mask; record #26's document and window mask is DocWindowMask (kernels/ops/attention_mask.h,
// the same functions; only the CUDA-core kernels of attention.cu take it). Rows fully masked
// inside a tile are handled by both implementations.
struct CausalMask {
  __host__ __device__ CausalMask at_batch(int64_t /*b*/) const { return *this; }
  __device__ bool allowed(int64_t t, int64_t s) const { return s <= t; }
  // Queries that may see keys [k0, k1) end at: (clamped to seq).
  __host__ __device__ int64_t query_end(int64_t /*k1*/, int64_t seq) const { return seq; }
  // The block queries [q0, q1) x keys [k0, k1): the tile loops' bounds already keep only
  // blocks with a visible pair, so never `masked` inside them.
  __device__ BlockKind block(int64_t q0, int64_t q1, int64_t k0, int64_t k1) const {
    if (k0 > q1 - 1) return BlockKind::masked;
    return k1 - 1 <= q0 ? BlockKind::full : BlockKind::partial;
  }
  // Keys that queries [q0, q1) may see: [key_begin, key_end).
  __host__ __device__ int64_t key_begin(int64_t /*q0*/) const { return 0; }
  __host__ __device__ int64_t key_end(int64_t q1) const { return q1; }
  // The first query that keys [k0, ...) may be seen by.
  __host__ __device__ int64_t query_begin(int64_t k0) const { return k0; }
};

// delta[bh, t] = dout_t . out_t. One warp per (b, t, h) row, 8 rows per block.
template <class T>
__global__ void attention_delta_kernel(float* delta, const T* dout, const T* out, int64_t rows, int64_t seq,
                                       int64_t heads, int64_t head_dim) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * 8 + (threadIdx.x >> 5);  // row = (b * seq + t) * heads + h
  if (row >= rows) return;
  const T* a = dout + row * head_dim;
  const T* o = out + row * head_dim;
  float acc = 0.0f;
  for (int64_t d = lane; d < head_dim; d += 32) acc += to_f32(a[d]) * to_f32(o[d]);
  acc = warp_sum(acc);
  if (lane == 0) {
    const int64_t h = row % heads, bt = row / heads, t = bt % seq, b = bt / seq;
    delta[(b * heads + h) * seq + t] = acc;
  }
}

template <class T>
void launch_attention_delta(float* delta, const T* dout, const T* out, int64_t rows, int64_t seq, int64_t heads,
                            int64_t head_dim) {
  attention_delta_kernel<T><<<static_cast<unsigned>(ceil_div(rows, 8)), 256, 0, stream()>>>(delta, dout, out, rows,
                                                                                             seq, heads, head_dim);
  CUDA_CHECK_LAUNCH();
}

// Raises a kernel's dynamic shared-memory limit (once per kernel; the attribute persists).
template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// grid (ceil(seq / rows), batch * heads): one tile of `rows` rows of one (batch, head) per block.
inline dim3 attention_tile_grid(int64_t seq, int64_t batch_heads, int rows) {
  if (batch_heads > 65535) throw std::invalid_argument("attention: batch * heads > 65535 (grid.y)");
  return dim3(static_cast<unsigned>(ceil_div(seq, rows)), static_cast<unsigned>(batch_heads));
}

template <class Fn>
void with_head_dim(int64_t head_dim, const char* op, Fn&& fn) {
  switch (head_dim) {
    case 64: fn(std::integral_constant<int, 64>{}); return;
    case 128: fn(std::integral_constant<int, 128>{}); return;
    default:
      throw std::invalid_argument(std::string("ops::") + op + ": the CUDA attention supports head_dim 64 and 128, not " +
                                  std::to_string(head_dim));
  }
}

}  // namespace
}  // namespace speedrun::cuda
