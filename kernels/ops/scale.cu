// The scaled-sum and dot kernels (ops::scaled_sum, ops::dot; src/ops/scale.cpp): record #26's
// learned scalars multiply whole activations, and their gradients are whole-tensor dot
// products. NOT YET RUN ON A GPU (compiled for sm_90; CudaOpsTest.ScaledSum*/Dot* compare
// them with the CPU when a device is present).
//
// scaled_sum: a grid-stride loop (activation.cu's launch shape), fp32 arithmetic, one
// rounding on store; out may alias x or y (each thread reads its element before writing it).
//
// dot: fp64 accumulation like the CPU's cpu::dot_all, deterministic: a FIXED grid of
// kDotBlocks x kDotThreads threads (independent of the device and of n), thread i summing
// elements i, i + grid, ... in order, then a fixed shared-memory tree per block and one block
// summing the kDotBlocks partials by the same tree. The bits therefore repeat from run to run
// and device to device; they differ from the CPU's (another order) by fp64 rounding only. The
// result is read back to the host: the call synchronizes cuda::stream() (cudaMemcpyAsync of
// 8 bytes + cudaStreamSynchronize), which a model calling it per layer pays per call.
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kDotBlocks = 256;
constexpr int kDotThreads = 256;

template <class T>
__global__ void scaled_sum_kernel(T* out, float alpha, const T* x, float beta, const T* y, int64_t n) {
  GRID_STRIDE_LOOP(i, n) {
    const float v = y ? alpha * to_f32(x[i]) + beta * to_f32(y[i]) : alpha * to_f32(x[i]);
    out[i] = from_f32<T>(v);
  }
}

// Sum of v over the block in a fixed tree (blockDim.x == kDotThreads, a power of two); the
// result in thread 0.
__device__ double block_tree_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int half = kDotThreads / 2; half > 0; half >>= 1) {
    if (static_cast<int>(threadIdx.x) < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  return shared[0];
}

template <class T>
__global__ void __launch_bounds__(kDotThreads) dot_partial_kernel(double* partial, const T* x, const T* y,
                                                                  int64_t n) {
  __shared__ double shared[kDotThreads];
  double acc = 0.0;
  const int64_t stride = static_cast<int64_t>(kDotBlocks) * kDotThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kDotThreads + threadIdx.x; i < n; i += stride)
    acc += static_cast<double>(to_f32(x[i])) * static_cast<double>(to_f32(y[i]));
  const double total = block_tree_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kDotThreads) dot_final_kernel(double* result, const double* partial) {
  __shared__ double shared[kDotThreads];
  static_assert(kDotBlocks == kDotThreads, "one thread per partial");
  const double total = block_tree_sum(partial[threadIdx.x], shared);
  if (threadIdx.x == 0) *result = total;
}

}  // namespace

void scaled_sum(DType act, void* out, float alpha, const void* x, float beta, const void* y, int64_t n) {
  if (n <= 0) return;
  with_act(act, "scaled_sum", [&]<class T>(std::type_identity<T>) {
    scaled_sum_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(out), alpha, static_cast<const T*>(x), beta, static_cast<const T*>(y), n);
    CUDA_CHECK_LAUNCH();
  });
}

double dot(DType act, const void* x, const void* y, int64_t n) {
  if (n <= 0) return 0.0;
  double* ws = static_cast<double*>(workspace((kDotBlocks + 1) * sizeof(double)));
  with_act(act, "dot", [&]<class T>(std::type_identity<T>) {
    dot_partial_kernel<T><<<kDotBlocks, kDotThreads, 0, stream()>>>(ws + 1, static_cast<const T*>(x),
                                                                     static_cast<const T*>(y), n);
    CUDA_CHECK_LAUNCH();
  });
  dot_final_kernel<<<1, kDotThreads, 0, stream()>>>(ws, ws + 1);
  CUDA_CHECK_LAUNCH();
  double result = 0.0;
  CUDA_CHECK(cudaMemcpyAsync(&result, ws, sizeof(double), cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  return result;
}

}  // namespace speedrun::cuda
