// Muon on the device (optim_cuda.h): momentum, Newton-Schulz and the update for a group's
// matrices, batched by shape.
//
// Per shape group of B matrices (rows x cols), each step is
//   muon_momentum_kernel   buf = lerp(buf, G, 1-mu); U = lerp(G, buf, mu) or buf; X = T(U)
//   sumsq_partials_kernel  32 fixed-range partial sums of X^2 per matrix (fixed order)
//   normalize_kernel       X = T(X / (||X||_F + 1e-7)), the norm summed from the partials
//   steps x 3 batched GEMMs (below), X ping-ponging between two buffers
//   muon_update_kernel     p = p (1 - lr wd) - lr T(X sqrt(max(1, rows/cols))), and the
//                          model's bf16 copy of p when lent (DeviceMatrix::copy; never run
//                          on a GPU yet)
// T is the iteration's storage type: bf16 (rounded to nearest even on store, like the
// CPU's ns_precision "bf16" mode) or f32.
//
// The iteration, X wide (rows <= cols, r = rows):      X tall (r = cols), on U = X^T:
//   A  = X X^T            (r x r)                       A  = U^T U
//   B  = c A A + b A      (C = A, alpha c, beta b)      B  = c A A + b A
//   X' = B X + a X        (C = X, alpha 1, beta a)      U' = U B^T + a U
// so nothing is ever transposed in memory. Rounding differs from the CPU's bf16 mode in
// one way: the CPU rounds c A, (c A) A, b A, the sum, B X and a X separately (torch's
// separate bf16 tensors); here each GEMM's fp32 result, beta term included, is rounded once.
//
// Symmetry: A = X X^T and B are symmetric, so half of those two products is redundant
// (at most 1/3 of the FLOPs for square matrices: the third product B X is a full one).
// We do not exploit it: cuBLAS's syrk has neither a bf16 nor a batched variant, and
// cuBLASLt has no symmetric output mode, so saving those FLOPs means a hand-written
// tensor-core kernel; the batched GEMMs are the correct, simple first version.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "core/buffer.h"
#include "core/device_memory.h"
#include "kernels/optim/batched_gemm.cuh"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"
#include "kernels/optim/optim_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPartials = 32;  // partial sums of squares per matrix

struct MatPtrs {
  float* p;
  const float* g;
  float* buf;
  bf16* copy;  // the model's bf16 weight copy, or null (written by the update kernel)
};

__device__ __forceinline__ float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// Grid (x blocks, B): blockIdx.y is the matrix, a grid-stride loop over its n elements.
template <class T>
__global__ void muon_momentum_kernel(const MatPtrs* __restrict__ mats, T* __restrict__ x, int64_t n, int64_t slot,
                                     float mu, bool nesterov) {
  const MatPtrs m = mats[blockIdx.y];
  T* xb = x + blockIdx.y * slot;
  const float one_minus_mu = 1.0f - mu;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = m.g[i];
    const float b = __fadd_rn(m.buf[i], __fmul_rn(one_minus_mu, __fsub_rn(g, m.buf[i])));  // lerp(buf, G, 1-mu)
    const float u = nesterov ? __fadd_rn(g, __fmul_rn(mu, __fsub_rn(b, g))) : b;             // lerp(G, buf, mu)
    m.buf[i] = b;
    xb[i] = from_f32<T>(u);
  }
}

// Grid (kPartials, B): block (j, b) sums x^2 over the j-th contiguous range of matrix b.
template <class T>
__global__ void sumsq_partials_kernel(const T* __restrict__ x, int64_t n, int64_t slot, float* __restrict__ partials) {
  __shared__ float scratch[32];
  const T* xb = x + blockIdx.y * slot;
  const int64_t per = (n + gridDim.x - 1) / gridDim.x;
  const int64_t lo = blockIdx.x * per, hi = min(n, lo + per);
  float s = 0.0f;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const float v = to_f32(xb[i]);
    s += v * v;
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partials[blockIdx.y * gridDim.x + blockIdx.x] = s;
}

// Grid (x blocks, B). Thread 0 of every block adds the matrix's partials in order (the
// same value in every block), then the block divides its elements by the norm + 1e-7.
template <class T>
__global__ void normalize_kernel(T* __restrict__ x, int64_t n, int64_t slot, const float* __restrict__ partials,
                                 bool bf16_scalars) {
  __shared__ float denom;
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int j = 0; j < kPartials; ++j) s += partials[blockIdx.y * kPartials + j];
    float d = sqrtf(s);
    // As the CPU: in bf16 mode the norm and the norm + eps are bf16 tensors.
    denom = bf16_scalars ? round_bf16(__fadd_rn(round_bf16(d), 1e-7f)) : __fadd_rn(d, 1e-7f);
  }
  __syncthreads();
  T* xb = x + blockIdx.y * slot;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    xb[i] = from_f32<T>(__fdiv_rn(to_f32(xb[i]), denom));
}

template <class T>
__global__ void muon_update_kernel(const MatPtrs* __restrict__ mats, const T* __restrict__ x, int64_t n, int64_t slot,
                                   float scale, float lr, float decay, bool round_update) {
  const MatPtrs m = mats[blockIdx.y];
  const T* xb = x + blockIdx.y * slot;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float u = __fmul_rn(to_f32(xb[i]), scale);
    if (round_update) u = round_bf16(u);  // upstream scales the bf16 update in bf16
    const float p = __fsub_rn(__fmul_rn(m.p[i], decay), __fmul_rn(lr, u));
    m.p[i] = p;
    if (m.copy) m.copy[i] = from_f32<bf16>(p);  // uniform over the block (one matrix per blockIdx.y)
  }
}

// Elements per batch slot: rounded up to 128 so that every matrix of a batch starts
// 256-byte aligned (cuBLASLt's preferred alignment) whatever its shape.
int64_t slot_of(int64_t elements) { return (elements + 127) / 128 * 128; }

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(n, kThreads), 1, 2048)); }

}  // namespace

struct MuonDevice::Impl {
  struct Group {
    int64_t rows = 0, cols = 0, count = 0;
    Buffer table;     // MatPtrs per matrix
    Buffer momentum;  // count x rows x cols f32
    Buffer x0, x1, a, b, partials;
  };
  // The Newton-Schulz GEMMs of one shape group on its normalized X (in x0); returns the
  // buffer holding the result.
  void* iterate(Group& g) const;
  NewtonSchulzCoefficients ns;
  bool nesterov = true;
  std::vector<Group> groups;
  size_t momentum_bytes = 0;
  std::vector<Tensor> views;  // each matrix's momentum, constructor order
};

MuonDevice::MuonDevice(const std::vector<DeviceMatrix>& mats, const NewtonSchulzCoefficients& ns, bool nesterov)
    : impl_(std::make_unique<Impl>()) {
  impl_->ns = ns;
  impl_->nesterov = nesterov;
  // Shapes in order of first appearance; matrices of a shape in group order.
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (const DeviceMatrix& m : mats) {
    if (m.rows <= 0 || m.cols <= 0) throw std::invalid_argument("MuonDevice: empty matrix");
    if (std::find(shapes.begin(), shapes.end(), std::make_pair(m.rows, m.cols)) == shapes.end())
      shapes.emplace_back(m.rows, m.cols);
  }
  const size_t elem = ns.bf16 ? 2 : 4;
  for (const auto& [rows, cols] : shapes) {
    Impl::Group g;
    g.rows = rows, g.cols = cols;
    std::vector<const DeviceMatrix*> members;
    for (const DeviceMatrix& m : mats)
      if (m.rows == rows && m.cols == cols) members.push_back(&m);
    g.count = static_cast<int64_t>(members.size());
    const int64_t n = rows * cols, r = std::min(rows, cols);
    const auto count = static_cast<size_t>(g.count);
    g.momentum = Buffer(Device::cuda, count * static_cast<size_t>(n) * sizeof(float));  // zeroed
    impl_->momentum_bytes += g.momentum.bytes();
    std::vector<MatPtrs> table;
    for (size_t j = 0; j < members.size(); ++j)
      table.push_back({members[j]->param, members[j]->grad, g.momentum.as<float>() + static_cast<int64_t>(j) * n,
                       static_cast<bf16*>(members[j]->copy)});
    g.table = Buffer(Device::cuda, table.size() * sizeof(MatPtrs));
    device_copy(g.table.data(), table.data(), table.size() * sizeof(MatPtrs));  // once, at construction
    g.x0 = Buffer(Device::cuda, count * static_cast<size_t>(slot_of(n)) * elem);
    g.x1 = Buffer(Device::cuda, g.x0.bytes());
    g.a = Buffer(Device::cuda, count * static_cast<size_t>(slot_of(r * r)) * elem);
    g.b = Buffer(Device::cuda, g.a.bytes());
    g.partials = Buffer(Device::cuda, count * kPartials * sizeof(float));
    if (poison_scratch()) {
      const DType t = ns.bf16 ? DType::bf16 : DType::f32;
      for (Buffer* b : {&g.x0, &g.x1, &g.a, &g.b})
        fill_nan(t, b->data(), static_cast<int64_t>(b->bytes() / elem));
      fill_nan(DType::f32, g.partials.data(), static_cast<int64_t>(count) * kPartials);
    }
    impl_->groups.push_back(std::move(g));
  }
  // Each matrix's momentum: the j-th matrix of its shape is slot j of its group's buffer.
  for (size_t i = 0; i < mats.size(); ++i) {
    int64_t j = 0;
    for (size_t e = 0; e < i; ++e) j += mats[e].rows == mats[i].rows && mats[e].cols == mats[i].cols ? 1 : 0;
    for (const Impl::Group& g : impl_->groups)
      if (g.rows == mats[i].rows && g.cols == mats[i].cols)
        impl_->views.push_back(Tensor::of(g.momentum.as<float>() + j * g.rows * g.cols, {g.rows, g.cols}, Device::cuda));
  }
}

MuonDevice::~MuonDevice() = default;

std::vector<Tensor> MuonDevice::momentum() { return impl_->views; }

void MuonDevice::step(float mu, double lr, double wd) {
  const NewtonSchulzCoefficients& ns = impl_->ns;
  const float decay = static_cast<float>(1.0 - lr * wd);
  const DType t = ns.bf16 ? DType::bf16 : DType::f32;
  for (Impl::Group& g : impl_->groups) {
    const int64_t rows = g.rows, cols = g.cols, n = rows * cols, slot = slot_of(n);
    const dim3 grid(blocks_for(n), static_cast<unsigned>(g.count));
    const auto* table = g.table.as<MatPtrs>();
    void* x = g.x0.data();  // the iteration's input: normalized in place
    with_act(t, "muon", [&]<class T>(std::type_identity<T>) {
      muon_momentum_kernel<T><<<grid, kThreads, 0, stream()>>>(table, static_cast<T*>(x), n, slot, mu, impl_->nesterov);
      CUDA_CHECK_LAUNCH();
      sumsq_partials_kernel<T><<<dim3(kPartials, static_cast<unsigned>(g.count)), kThreads, 0, stream()>>>(
          static_cast<const T*>(x), n, slot, g.partials.as<float>());
      CUDA_CHECK_LAUNCH();
      normalize_kernel<T><<<grid, kThreads, 0, stream()>>>(static_cast<T*>(x), n, slot, g.partials.as<float>(), ns.bf16);
      CUDA_CHECK_LAUNCH();
    });
    x = impl_->iterate(g);
    const float scale = static_cast<float>(std::sqrt(std::max(1.0, static_cast<double>(rows) / cols)));
    with_act(t, "muon", [&]<class T>(std::type_identity<T>) {
      muon_update_kernel<T><<<grid, kThreads, 0, stream()>>>(table, static_cast<const T*>(x), n, slot, scale,
                                                             static_cast<float>(lr), decay, ns.bf16);
      CUDA_CHECK_LAUNCH();
    });
  }
}

void* MuonDevice::Impl::iterate(Group& g) const {
  const DType t = ns.bf16 ? DType::bf16 : DType::f32;
  const int64_t rows = g.rows, cols = g.cols, slot = slot_of(rows * cols);
  const bool wide = rows <= cols;
  const int64_t r = wide ? rows : cols, rr = slot_of(r * r);
  void* x = g.x0.data();
  void* xn = g.x1.data();
  for (int64_t it = 0; it < ns.steps; ++it) {
    BatchedGemmArgs gram{.m = r, .n = r, .batch = g.count, .a = x, .lda = cols, .stride_a = slot, .b = x,
                         .ldb = cols, .stride_b = slot, .d = g.a.data(), .ldd = r, .stride_d = rr,
                         .ab_type = t, .cd_type = t};
    if (wide) gram.trans_b = true, gram.k = cols;  // X X^T
    else gram.trans_a = true, gram.k = rows;       // U^T U
    batched_gemm(gram);
    batched_gemm({.m = r, .n = r, .k = r, .batch = g.count, .a = g.a.data(), .lda = r, .stride_a = rr,
                  .b = g.a.data(), .ldb = r, .stride_b = rr, .c = g.a.data(), .ldc = r, .stride_c = rr,
                  .d = g.b.data(), .ldd = r, .stride_d = rr, .ab_type = t, .cd_type = t,
                  .alpha = static_cast<float>(ns.c), .beta = static_cast<float>(ns.b)});
    if (wide)  // X' = B X + a X
      batched_gemm({.m = rows, .n = cols, .k = r, .batch = g.count, .a = g.b.data(), .lda = r, .stride_a = rr,
                    .b = x, .ldb = cols, .stride_b = slot, .c = x, .ldc = cols, .stride_c = slot, .d = xn,
                    .ldd = cols, .stride_d = slot, .ab_type = t, .cd_type = t, .alpha = 1.0f,
                    .beta = static_cast<float>(ns.a)});
    else  // U' = U B^T + a U
      batched_gemm({.trans_b = true, .m = rows, .n = cols, .k = r, .batch = g.count, .a = x, .lda = cols,
                    .stride_a = slot, .b = g.b.data(), .ldb = r, .stride_b = rr, .c = x, .ldc = cols,
                    .stride_c = slot, .d = xn, .ldd = cols, .stride_d = slot, .ab_type = t, .cd_type = t,
                    .alpha = 1.0f, .beta = static_cast<float>(ns.a)});
    std::swap(x, xn);
  }
  return x;
}

void MuonDevice::newton_schulz_only() {
  for (Impl::Group& g : impl_->groups) impl_->iterate(g);
}

size_t MuonDevice::state_bytes() const { return impl_->momentum_bytes; }

double MuonDevice::newton_schulz_flops() const {
  double flops = 0.0;
  for (const Impl::Group& g : impl_->groups) {
    const double r = static_cast<double>(std::min(g.rows, g.cols)), c = static_cast<double>(std::max(g.rows, g.cols));
    flops += static_cast<double>(g.count) * static_cast<double>(impl_->ns.steps) * (4.0 * r * r * c + 2.0 * r * r * r);
  }
  return flops;
}

}  // namespace speedrun::cuda
