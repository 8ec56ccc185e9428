// RMSNorm over the last dimension, with or without gains (QK-norm is the gain-less case
// over rows of head_dim), forward and backward.
//
// Launch shape: one warp per row, 8 rows (256 threads) per block, grid ceil(rows / 8).
// The model's rows have 768 (d_model) or 128 / 64 (head_dim) elements: a warp covers a row
// in 24 or 4 / 2 coalesced sweeps, and the row's sum of squares is a warp reduction with
// no shared memory or block barrier. Lanes stride over the row (lane, lane+32, ...), so any
// channel count works, multiples of 32 or not.
//
// Aliasing: out may alias x (forward) and dx may alias dout or x (backward, not
// accumulating): each lane reads the elements it later writes, and the warp reduction
// (__shfl_xor_sync) separates the reads of the whole row from the first write.
#include "kernels/ops/column_sums.cuh"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kRowsPerBlock = 8;

// r = 1 / sqrt(mean(x^2) + eps) (as the CPU: sum / C, then 1 / sqrt, not rsqrt);
// out = (x r) g.
template <class T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* x, const float* gains, int64_t rows,
                                       int64_t channels, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;  // the whole warp leaves together: the shuffles below stay full
  const T* xr = x + row * channels;
  T* yr = out + row * channels;
  float ss = 0.0f;
  for (int64_t c = lane; c < channels; c += 32) {
    const float v = to_f32(xr[c]);
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(channels) + eps);
  if (lane == 0) rstd[row] = r;
  for (int64_t c = lane; c < channels; c += 32) {
    const float v = to_f32(xr[c]) * r;
    yr[c] = from_f32<T>(gains ? v * gains[c] : v);
  }
}

// With u = dout * g (dout without gains) and r = rstd[row]:
//   dx = r u - r^3 x (u . x) / C,  written or added.
template <class T>
__global__ void rmsnorm_backward_kernel(T* dx, const T* dout, const T* x, const float* gains, const float* rstd,
                                        int64_t rows, int64_t channels, bool accumulate_dx) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const T* dy = dout + row * channels;
  const T* xr = x + row * channels;
  T* dxr = dx + row * channels;
  float ux = 0.0f;
  for (int64_t c = lane; c < channels; c += 32) {
    const float u = gains ? to_f32(dy[c]) * gains[c] : to_f32(dy[c]);
    ux += u * to_f32(xr[c]);
  }
  ux = warp_sum(ux);
  const float r = rstd[row];
  const float k = (r * r * r) * (ux / static_cast<float>(channels));
  for (int64_t c = lane; c < channels; c += 32) {
    const float u = gains ? to_f32(dy[c]) * gains[c] : to_f32(dy[c]);
    float g = r * u - k * to_f32(xr[c]);
    if (accumulate_dx) g += to_f32(dxr[c]);
    dxr[c] = from_f32<T>(g);
  }
}

// value(r, c) = dout[r, c] * (x[r, c] * rstd[r]) for dgains.
template <class T>
struct GainsGradValue {
  const T* dout;
  const T* x;
  const float* rstd;
  int64_t cols;
  __device__ float operator()(int64_t r, int64_t c) const {
    return to_f32(dout[r * cols + c]) * (to_f32(x[r * cols + c]) * rstd[r]);
  }
};

}  // namespace

void rmsnorm_forward(DType act, void* out, float* rstd, const void* x, const float* gains, int64_t rows,
                     int64_t channels, float eps) {
  if (rows <= 0) return;
  with_act(act, "rmsnorm_forward", [&]<class T>(std::type_identity<T>) {
    const unsigned blocks = static_cast<unsigned>(ceil_div(rows, kRowsPerBlock));
    rmsnorm_forward_kernel<T><<<blocks, kRowsPerBlock * 32, 0, stream()>>>(
        static_cast<T*>(out), rstd, static_cast<const T*>(x), gains, rows, channels, eps);
    CUDA_CHECK_LAUNCH();
  });
}

void rmsnorm_backward(DType act, void* dx, float* dgains, const void* dout, const void* x, const float* gains,
                      const float* rstd, int64_t rows, int64_t channels, bool accumulate_dx) {
  if (rows <= 0) return;
  with_act(act, "rmsnorm_backward", [&]<class T>(std::type_identity<T>) {
    // dgains first: dx may alias dout, and the stream orders the two launches.
    if (dgains) {
      add_column_sums(dgains, GainsGradValue<T>{static_cast<const T*>(dout), static_cast<const T*>(x), rstd, channels},
                      rows, channels);
    }
    if (!dx) return;
    const unsigned blocks = static_cast<unsigned>(ceil_div(rows, kRowsPerBlock));
    rmsnorm_backward_kernel<T><<<blocks, kRowsPerBlock * 32, 0, stream()>>>(
        static_cast<T*>(dx), static_cast<const T*>(dout), static_cast<const T*>(x), gains, rstd, rows, channels,
        accumulate_dx);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace speedrun::cuda
