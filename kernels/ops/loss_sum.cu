// The step's loss kept on the device (ops::add_sum_of_losses): one block adds a micro-batch's
// per-token losses into a double, so the trainer reads one number per step instead of one
// per micro-batch (a host synchronization each). Never run on a GPU yet.
//
// Launch shape: one block of kThreads threads. Thread t sums losses[t], losses[t + kThreads],
// ... in double, in index order; the block then adds the kThreads partial sums with a fixed
// shared-memory tree, so the result is the same on every run (not the host's row-order sum:
// they differ by double rounding, ~1e-16 relative). 65,536 losses (a Track 3 micro-batch)
// are 64 loads per thread: a few microseconds, once per micro-batch.
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 1024;

__global__ void add_sum_of_losses_kernel(double* __restrict__ total, const float* __restrict__ losses, int64_t n,
                                         bool overwrite) {
  __shared__ double partial[kThreads];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) s += static_cast<double>(losses[i]);
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width >>= 1) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) *total = overwrite ? partial[0] : *total + partial[0];
}

}  // namespace

void add_sum_of_losses(double* total, const float* losses, int64_t n, bool overwrite) {
  add_sum_of_losses_kernel<<<1, kThreads, 0, stream()>>>(total, losses, n, overwrite);
  CUDA_CHECK_LAUNCH();
}

double read_f64(const double* total) {
  double host = 0.0;
  CUDA_CHECK(cudaMemcpyAsync(&host, total, sizeof(double), cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  return host;
}

}  // namespace speedrun::cuda
