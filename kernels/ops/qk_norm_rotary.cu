// QK-norm fused with the rotary embedding, forward and backward, on (B, T, H, D) q or k with
// f32 (T', D/2) cos/sin tables (ops::qk_norm_rotary_forward/backward, SPEEDRUN_FUSE_NORMS=1).
// NOT YET RUN ON A GPU.
//
// What the model ran before, and what these kernels replace (each a pass over the tensor):
//   forward:  n = qk_norm(x) (rounded to act), out = rotary(n) (rounded again);
//   backward: u = rotary^T(dout) (rounded to act), dx = qk_norm_backward(u, x, rstd).
// Each kernel does both in one pass and keeps the intermediate rounding to act (n, u), so its
// results are those of the two kernels up to the order of the row's sum (the same
// arithmetic per element: sum / D then 1 / sqrt; r u - r^3 x (u . x) / D).
//
// Launch shape: one warp per head row of D = 64 P elements (P = 1 or 2: head_dim 64 or 128),
// grid-stride over the B T H rows, 256 threads per block. Lane l owns the rotary pairs
// (j, j + D/2) for j = l + 32 p, p < P: both halves of its pairs, so the rotation needs no
// shuffle, and each warp-wide access reads 32 consecutive elements (coalesced). The row's
// sum (sum of squares, or u . x) is a warp butterfly. Rows are whole per warp and the loop
// bound is uniform per warp, so every shuffle has the full warp.
//
// Aliasing: out may alias x, dx may alias dout or x: a lane reads all of its elements before
// the warp reduction and writes only those elements after it.
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

// v rounded to T and widened again (the value the unfused kernels store and reread).
template <class T>
__device__ __forceinline__ float through(float v) {
  return to_f32(from_f32<T>(v));
}

template <class T, int P>
__global__ void __launch_bounds__(kThreads)
    qk_norm_rotary_forward_kernel(T* out, float* rstd, const T* x, const float* cos_table, const float* sin_table,
                                  int64_t rows, int64_t seq, int64_t heads, float eps) {
  constexpr int half = 32 * P, D = 2 * half;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < rows;
       row += warps) {
    const int64_t t = (row / heads) % seq;
    const T* xr = x + row * D;
    T* yr = out + row * D;
    float x1[P], x2[P];
    float ss = 0.0f;
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int j = lane + 32 * p;
      x1[p] = to_f32(xr[j]);
      x2[p] = to_f32(xr[j + half]);
      ss += x1[p] * x1[p] + x2[p] * x2[p];
    }
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
    if (lane == 0) rstd[row] = r;
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int j = lane + 32 * p;
      const float n1 = through<T>(x1[p] * r), n2 = through<T>(x2[p] * r);
      const float c = cos_table[t * half + j], s = sin_table[t * half + j];
      yr[j] = from_f32<T>(n1 * c + n2 * s);
      yr[j + half] = from_f32<T>(n1 * (-s) + n2 * c);
    }
  }
}

template <class T, int P>
__global__ void __launch_bounds__(kThreads)
    qk_norm_rotary_backward_kernel(T* dx, const T* dout, const T* x, const float* rstd, const float* cos_table,
                                   const float* sin_table, int64_t rows, int64_t seq, int64_t heads) {
  constexpr int half = 32 * P, D = 2 * half;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < rows;
       row += warps) {
    const int64_t t = (row / heads) % seq;
    const T* dy = dout + row * D;
    const T* xr = x + row * D;
    T* dxr = dx + row * D;
    float u1[P], u2[P], x1[P], x2[P];
    float ux = 0.0f;
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int j = lane + 32 * p;
      const float d1 = to_f32(dy[j]), d2 = to_f32(dy[j + half]);
      const float c = cos_table[t * half + j], s = sin_table[t * half + j];
      u1[p] = through<T>(d1 * c - d2 * s);  // the transpose rotation (rotary_backward)
      u2[p] = through<T>(d1 * s + d2 * c);
      x1[p] = to_f32(xr[j]);
      x2[p] = to_f32(xr[j + half]);
      ux += u1[p] * x1[p] + u2[p] * x2[p];
    }
    ux = warp_sum(ux);
    const float r = rstd[row];
    const float k = (r * r * r) * (ux / static_cast<float>(D));
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int j = lane + 32 * p;
      dxr[j] = from_f32<T>(r * u1[p] - k * x1[p]);
      dxr[j + half] = from_f32<T>(r * u2[p] - k * x2[p]);
    }
  }
}

unsigned blocks_for(int64_t rows) { return grid_for(rows * 32, kThreads); }

// Calls fn(std::integral_constant<int, P>) for head_dim = 64 P, P = 1 or 2.
template <class Fn>
void with_pairs_per_lane(const char* op, int64_t head_dim, Fn&& fn) {
  if (head_dim == 64) return fn(std::integral_constant<int, 1>{});
  if (head_dim == 128) return fn(std::integral_constant<int, 2>{});
  throw std::invalid_argument(std::string(op) + ": head_dim " + std::to_string(head_dim) +
                              " has no fused kernel (64 or 128; qk_norm_rotary_fuses says which)");
}

}  // namespace

bool qk_norm_rotary_fuses(int64_t head_dim) {
  return norm_fusion() == NormFusion::on && (head_dim == 64 || head_dim == 128);
}

void qk_norm_rotary_forward(DType act, void* out, float* rstd, const void* x, const float* cos, const float* sin,
                            int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float eps) {
  const int64_t rows = batch * seq * heads;
  with_pairs_per_lane("qk_norm_rotary_forward", head_dim, [&](auto pairs) {
    if (rows <= 0) return;
    with_act(act, "qk_norm_rotary_forward", [&]<class T>(std::type_identity<T>) {
      qk_norm_rotary_forward_kernel<T, decltype(pairs)::value><<<blocks_for(rows), kThreads, 0, stream()>>>(
          static_cast<T*>(out), rstd, static_cast<const T*>(x), cos, sin, rows, seq, heads, eps);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void qk_norm_rotary_backward(DType act, void* dx, const void* dout, const void* x, const float* rstd,
                             const float* cos, const float* sin, int64_t batch, int64_t seq, int64_t heads,
                             int64_t head_dim) {
  const int64_t rows = batch * seq * heads;
  with_pairs_per_lane("qk_norm_rotary_backward", head_dim, [&](auto pairs) {
    if (rows <= 0) return;
    with_act(act, "qk_norm_rotary_backward", [&]<class T>(std::type_identity<T>) {
      qk_norm_rotary_backward_kernel<T, decltype(pairs)::value><<<blocks_for(rows), kThreads, 0, stream()>>>(
          static_cast<T*>(dx), static_cast<const T*>(dout), static_cast<const T*>(x), rstd, cos, sin, rows, seq,
          heads);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace speedrun::cuda
