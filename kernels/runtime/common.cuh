// Device-side building blocks shared by the kernels: element conversions between the
// storage types (f32, bf16) and fp32 arithmetic, warp and block reductions whose order
// is fixed (so results are the same on every run), and launch-size helpers.
//
// Every kernel in kernels/ computes in fp32 whatever its storage type: bf16 values are
// widened on load (exact) and rounded to nearest-even on store.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/tensor.h"
#include "kernels/runtime/cuda_check.cuh"

// for (int64_t i = ...) over [0, n) with a grid-stride step: one element per thread per
// iteration, int64 indices, any grid size.
#define GRID_STRIDE_LOOP(i, n)                                                                        \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);             \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

namespace speedrun::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }

constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Butterfly reductions over the 32 lanes of a warp; every lane must call them (full mask)
// and every lane gets the result. The pairing order is fixed, so the result is too.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum over a whole block (blockDim.x a multiple of 32, at most 1024); every thread must call
// it and every thread gets the result. `scratch` is 32 floats of shared memory; the function
// begins and ends with a barrier so it may be called repeatedly with the same scratch.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = lane < warps ? scratch[lane] : 0.0f;
  total = warp_sum(total);  // every warp reduces the same values in the same order
  __syncthreads();
  return total;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over n elements: enough to fill the device several times,
// capped so that the index arithmetic stays in range.
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = ceil_div(n, threads);
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > (1 << 20) ? (1 << 20) : blocks));
}

// Host side: runs fn(std::type_identity<float>{}) or fn(std::type_identity<bf16>{}) for the
// activation storage type `act`; any other dtype is refused naming the op.
template <class Fn>
void with_act(DType act, const char* op, Fn&& fn) {
  switch (act) {
    case DType::f32: fn(std::type_identity<float>{}); return;
    case DType::bf16: fn(std::type_identity<bf16>{}); return;
    default:
      throw std::invalid_argument(std::string("ops::") + op + ": the CUDA backend takes f32 or bf16 activations, not " +
                                  dtype_name(act));
  }
}

}  // namespace speedrun::cuda
