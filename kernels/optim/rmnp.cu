// RMNP on the device (optim_cuda.h): one launch per step over every row of every matrix
// of the group, grid (max rows, matrices), one block per row (blocks past a matrix's last
// row exit). As the CPU (src/optim/rmnp.cpp), a first pass updates the row's momentum and
// sums U^2 in double, a second recomputes U and steps; each thread touches the same
// elements in both passes, so no barrier is needed between them. The row's sum is
// reduced over the block in a fixed order (warp butterflies, then the warps in order).
// Elementwise operations are rounded one by one, as the CPU computes them. The second pass
// also stores the model's bf16 copy of the new value when one is lent (DeviceMatrix::copy;
// never run on a GPU yet).
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "core/buffer.h"
#include "core/device_memory.h"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/optim/optim_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;

struct RmnpMatrix {
  float* p;
  const float* g;
  float* buf;
  bf16* copy;  // the model's bf16 weight copy, or null (written with the update)
  int64_t rows, cols;
  double shape_scale;  // sqrt(max(1, rows/cols)), in double as the CPU
};

__device__ __forceinline__ double warp_sum_double(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__global__ void rmnp_kernel(const RmnpMatrix* __restrict__ mats, float mu, float eps, double lr, float decay,
                            bool nesterov) {
  __shared__ double scratch[32];
  const RmnpMatrix m = mats[blockIdx.y];
  const int64_t row = blockIdx.x;
  if (row >= m.rows) return;  // uniform over the block
  float* br = m.buf + row * m.cols;
  const float* gr = m.g + row * m.cols;
  float* pr = m.p + row * m.cols;
  double sum_sq = 0.0;
  for (int64_t j = threadIdx.x; j < m.cols; j += blockDim.x) {
    const float b = __fadd_rn(__fmul_rn(mu, br[j]), gr[j]);
    br[j] = b;
    const float u = nesterov ? __fadd_rn(gr[j], __fmul_rn(mu, b)) : b;
    sum_sq = __dadd_rn(sum_sq, __dmul_rn(static_cast<double>(u), static_cast<double>(u)));
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  sum_sq = warp_sum_double(sum_sq);
  if (lane == 0) scratch[warp] = sum_sq;
  __syncthreads();
  double total = lane < warps ? scratch[lane] : 0.0;
  total = warp_sum_double(total);
  const float inv_norm = __fdiv_rn(1.0f, fmaxf(static_cast<float>(sqrt(total)), eps));
  const float step_size = static_cast<float>(__dmul_rn(lr, m.shape_scale));
  for (int64_t j = threadIdx.x; j < m.cols; j += blockDim.x) {
    const float u = nesterov ? __fadd_rn(gr[j], __fmul_rn(mu, br[j])) : br[j];
    const float p = __fsub_rn(__fmul_rn(pr[j], decay), __fmul_rn(step_size, __fmul_rn(u, inv_norm)));
    pr[j] = p;
    if (m.copy) m.copy[row * m.cols + j] = from_f32<bf16>(p);
  }
}

}  // namespace

struct RmnpDevice::Impl {
  Buffer momentum, table;
  std::vector<Tensor> views;  // each matrix's momentum, constructor order
  unsigned mats = 0, max_rows = 0;
  bool nesterov = true;
};

RmnpDevice::RmnpDevice(const std::vector<DeviceMatrix>& mats, bool nesterov) : impl_(std::make_unique<Impl>()) {
  impl_->nesterov = nesterov;
  int64_t total = 0, max_rows = 0;
  for (const DeviceMatrix& m : mats) {
    if (m.rows <= 0 || m.cols <= 0) throw std::invalid_argument("RmnpDevice: empty matrix");
    total += m.rows * m.cols;
    max_rows = std::max(max_rows, m.rows);
  }
  impl_->momentum = Buffer(Device::cuda, std::max<size_t>(1, static_cast<size_t>(total) * sizeof(float)));  // zeroed
  std::vector<RmnpMatrix> table;
  int64_t offset = 0;
  for (const DeviceMatrix& m : mats) {
    table.push_back({m.param, m.grad, impl_->momentum.as<float>() + offset, static_cast<bf16*>(m.copy), m.rows, m.cols,
                     std::sqrt(std::max(1.0, static_cast<double>(m.rows) / static_cast<double>(m.cols)))});
    impl_->views.push_back(Tensor::of(impl_->momentum.as<float>() + offset, {m.rows, m.cols}, Device::cuda));
    offset += m.rows * m.cols;
  }
  impl_->mats = static_cast<unsigned>(table.size());
  impl_->max_rows = static_cast<unsigned>(max_rows);
  if (!table.empty()) {
    impl_->table = Buffer(Device::cuda, table.size() * sizeof(RmnpMatrix));
    device_copy(impl_->table.data(), table.data(), table.size() * sizeof(RmnpMatrix));  // once, at construction
  }
}

RmnpDevice::~RmnpDevice() = default;

std::vector<Tensor> RmnpDevice::momentum() { return impl_->views; }

void RmnpDevice::step(float mu, float eps, double lr, double wd) {
  if (impl_->mats == 0) return;
  const float decay = static_cast<float>(1.0 - lr * wd);
  rmnp_kernel<<<dim3(impl_->max_rows, impl_->mats), kThreads, 0, stream()>>>(impl_->table.as<RmnpMatrix>(), mu, eps,
                                                                            lr, decay, impl_->nesterov);
  CUDA_CHECK_LAUNCH();
}

size_t RmnpDevice::state_bytes() const { return impl_->mats == 0 ? 0 : impl_->momentum.bytes(); }

}  // namespace speedrun::cuda
