// Newton-Muon's input statistics on the device (optim_cuda.h; the semantics are those of
// src/optim/input_statistic.cpp, operation by operation where it matters).
//
// Layout. Blocks (the n x n statistics) are grouped by width n; a width group keeps its
// blocks contiguously in five buffers: A (accumulator), C (EMA), P (the inverse used every
// step), W (C + r I, factorized in place) and R (the right-hand side that becomes the
// inverse). Each statistic's count is one f32 on the device (the CPU keeps it after A as
// one f32 too), incremented by a one-thread kernel per capture, so no count ever crosses
// to the host.
//
// Refresh, per width group, all launches on cuda::stream(), no host synchronization:
//   ema_kernel       C += alpha (A / max(count, 1) - C), alpha = beta or 0 when count = 0; A = 0
//   ridge_kernel     one block per statistic block: trace of C summed in the CPU's order by
//                    one thread, r = ridge tr/n + ridge_eps (double), W = C + r I, R = I;
//                    the first block of a statistic clears its count
//   cusolverDnSpotrfBatched (lower) on all W: W = L L^T, info per block on the device
//   cublasStrsmBatched twice: R = L^-1, then R = L^-T R = (C + r I)^-1
//   finalize_kernel  P = the inverse's lower triangle mirrored (exactly symmetric, as the
//                    CPU's spotri + mirror), or I where info != 0; block (0, 0) adds the
//                    number of failed blocks to the device failure counter.
// cuSOLVER has no batched Cholesky inverse (potri) and its batched potrs takes one
// right-hand side only, hence the two batched triangular solves.
//
// Capture: A_b += X_b^T X_b / tokens for every column block b of X in one strided-batched
// cuBLASLt GEMM (batch = blocks, the blocks' columns n apart), X f32 or bf16, fp32
// accumulation into the f32 A. Precondition: out_b = G_b P_b for every column block of
// every job, one cublasGemmBatchedEx (pointer arrays, fp32, CUBLAS_COMPUTE_32F: no TF32)
// per (rows, n, row width) shape.
#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
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
constexpr int kRidgeThreads = 1024;

struct BlockRef {
  float* acc;
  float* cov;
  float* inv;
  float* work;
  float* rhs;
  float* count;         // the statistic's count
  int first_of_stat;    // 1 for the statistic's first block (it clears the count)
};

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(n, kThreads), 1, 1024)); }

__global__ void add_one_kernel(float* count) { *count += 1.0f; }

// Grid (x blocks, statistic blocks).
__global__ void ema_kernel(const BlockRef* __restrict__ blocks, int64_t nn, float beta) {
  const BlockRef b = blocks[blockIdx.y];
  const float count = *b.count;
  const float inv_count = __fdiv_rn(1.0f, fmaxf(count, 1.0f));  // upstream divides by max(count, 1)
  const float alpha = count > 0.0f ? beta : 0.0f;               // and skips a statistic nobody captured
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < nn;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float c = b.cov[i];
    b.cov[i] = __fadd_rn(c, __fmul_rn(alpha, __fsub_rn(__fmul_rn(b.acc[i], inv_count), c)));  // lerp(C, K, alpha)
    b.acc[i] = 0.0f;
  }
}

// One block per statistic block.
__global__ void ridge_kernel(const BlockRef* __restrict__ blocks, int64_t n, double ridge, double ridge_eps) {
  __shared__ float r;
  const BlockRef b = blocks[blockIdx.x];
  if (threadIdx.x == 0) {
    float trace = 0.0f;  // in the CPU's order: one float sum along the diagonal
    for (int64_t i = 0; i < n; ++i) trace = __fadd_rn(trace, b.cov[i * n + i]);
    r = static_cast<float>(
        __dadd_rn(__dmul_rn(__ddiv_rn(static_cast<double>(trace), static_cast<double>(n)), ridge), ridge_eps));
    if (b.first_of_stat) *b.count = 0.0f;  // read by ema_kernel, which has finished
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < n * n; i += blockDim.x) {
    const bool diag = i / n == i % n;
    b.work[i] = diag ? __fadd_rn(b.cov[i], r) : b.cov[i];
    b.rhs[i] = diag ? 1.0f : 0.0f;
  }
}

// Grid (x blocks, statistic blocks). R holds the inverse in column-major order; its
// lower triangle (i >= j) is mirrored, as the CPU mirrors spotri's triangle.
__global__ void finalize_kernel(const BlockRef* __restrict__ blocks, const int* __restrict__ info, int64_t n,
                                int nblocks, long long* __restrict__ failures) {
  const BlockRef b = blocks[blockIdx.y];
  const bool failed = info[blockIdx.y] != 0;
  const int64_t nn = n * n;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < nn;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;  // row-major (i, j) of P
    if (failed) b.inv[e] = i == j ? 1.0f : 0.0f;
    else b.inv[e] = i >= j ? b.rhs[j * n + i] : b.rhs[i * n + j];
  }
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
    long long add = 0;
    for (int k = 0; k < nblocks; ++k) add += info[k] != 0;
    *failures += add;
  }
}

}  // namespace

struct NewtonMuonStatsDevice::Impl {
  struct WidthGroup {
    int64_t n = 0, blocks = 0;
    Buffer acc, cov, inv, work, rhs;
    Buffer refs;                  // BlockRef per block
    Buffer work_ptrs, rhs_ptrs;   // float* per block, for cuSOLVER / cuBLAS batched calls
    Buffer info;                  // int per block
  };
  struct StatPlace {
    size_t group = 0;
    int64_t first = 0, blocks = 1, n = 0;
    float* count = nullptr;
  };
  // One cublasGemmBatchedEx of the precondition products.
  struct Product {
    int64_t rows = 0, n = 0, width = 0, batch = 0;
    Buffer a, b, c;  // pointer arrays: P, G, out (column-major roles, see precondition())
  };
  std::vector<WidthGroup> groups;
  std::vector<StatPlace> stats;
  std::vector<Product> products;
  Buffer counts;    // f32 per statistic
  Buffer failures;  // one long long
  cusolverDnHandle_t solver = nullptr;
  cublasHandle_t blas = nullptr;
  size_t state = 0;

  ~Impl() {  // errors ignored: this may run at exit
    if (solver) cusolverDnDestroy(solver);
    if (blas) cublasDestroy(blas);
  }
};

namespace {

template <class T>
Buffer upload(const std::vector<T>& v) {
  Buffer b(Device::cuda, std::max<size_t>(1, v.size() * sizeof(T)));
  if (!v.empty()) device_copy(b.data(), v.data(), v.size() * sizeof(T));  // once, at construction
  return b;
}

}  // namespace

NewtonMuonStatsDevice::NewtonMuonStatsDevice(const std::vector<StatisticShape>& stats,
                                             const std::vector<PreconditionJob>& jobs, double initial_scale)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.counts = Buffer(Device::cuda, std::max<size_t>(1, stats.size()) * sizeof(float));  // zeroed
  im.failures = Buffer(Device::cuda, sizeof(long long));
  im.stats.resize(stats.size());
  // Width groups in order of first appearance; a statistic's blocks are contiguous.
  std::vector<int64_t> widths;
  for (const StatisticShape& s : stats) {
    if (s.block_width <= 0 || s.blocks <= 0) throw std::invalid_argument("NewtonMuonStatsDevice: empty statistic");
    if (std::find(widths.begin(), widths.end(), s.block_width) == widths.end()) widths.push_back(s.block_width);
  }
  for (size_t gi = 0; gi < widths.size(); ++gi) {
    Impl::WidthGroup g;
    g.n = widths[gi];
    for (size_t s = 0; s < stats.size(); ++s) {
      if (stats[s].block_width != g.n) continue;
      im.stats[s] = {gi, g.blocks, stats[s].blocks, g.n, im.counts.as<float>() + s};
      g.blocks += stats[s].blocks;
    }
    const int64_t nn = g.n * g.n;
    const size_t bytes = static_cast<size_t>(g.blocks * nn) * sizeof(float);
    g.acc = Buffer(Device::cuda, bytes);  // zeroed
    g.work = Buffer(Device::cuda, bytes);
    g.rhs = Buffer(Device::cuda, bytes);
    if (poison_scratch()) {
      fill_nan(DType::f32, g.work.data(), g.blocks * g.n * g.n);
      fill_nan(DType::f32, g.rhs.data(), g.blocks * g.n * g.n);
    }
    // C = initial_scale I and P = I, built on the host once.
    std::vector<float> eye(static_cast<size_t>(g.blocks * nn), 0.0f);
    for (int64_t b = 0; b < g.blocks; ++b)
      for (int64_t i = 0; i < g.n; ++i) eye[static_cast<size_t>(b * nn + i * g.n + i)] = static_cast<float>(initial_scale);
    g.cov = upload(eye);
    for (int64_t b = 0; b < g.blocks; ++b)
      for (int64_t i = 0; i < g.n; ++i) eye[static_cast<size_t>(b * nn + i * g.n + i)] = 1.0f;
    g.inv = upload(eye);
    std::vector<BlockRef> refs;
    std::vector<float*> work_ptrs, rhs_ptrs;
    for (size_t s = 0; s < stats.size(); ++s) {
      if (stats[s].block_width != g.n) continue;
      for (int64_t k = 0; k < stats[s].blocks; ++k) {
        const int64_t o = (im.stats[s].first + k) * nn;
        refs.push_back({g.acc.as<float>() + o, g.cov.as<float>() + o, g.inv.as<float>() + o, g.work.as<float>() + o,
                        g.rhs.as<float>() + o, im.stats[s].count, k == 0 ? 1 : 0});
        work_ptrs.push_back(g.work.as<float>() + o);
        rhs_ptrs.push_back(g.rhs.as<float>() + o);
      }
    }
    g.refs = upload(refs);
    g.work_ptrs = upload(work_ptrs);
    g.rhs_ptrs = upload(rhs_ptrs);
    g.info = Buffer(Device::cuda, static_cast<size_t>(g.blocks) * sizeof(int));
    im.state += 3 * bytes;
    im.groups.push_back(std::move(g));
  }
  // Precondition products, batched by (rows, n, width).
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::vector<std::tuple<const float*, const float*, float*>>> shapes;
  for (const PreconditionJob& j : jobs) {
    if (j.stat >= stats.size()) throw std::invalid_argument("NewtonMuonStatsDevice: job names no statistic");
    const Impl::StatPlace& st = im.stats[j.stat];
    const int64_t width = st.blocks * st.n;
    const float* inv = im.groups[st.group].inv.as<float>() + st.first * st.n * st.n;
    auto& list = shapes[{j.rows, st.n, width}];
    for (int64_t k = 0; k < st.blocks; ++k) list.emplace_back(inv + k * st.n * st.n, j.grad + k * st.n, j.out + k * st.n);
  }
  for (const auto& [key, list] : shapes) {
    Impl::Product p;
    std::tie(p.rows, p.n, p.width) = key;
    p.batch = static_cast<int64_t>(list.size());
    std::vector<const float*> a, b;
    std::vector<float*> c;
    for (const auto& [pa, pb, pc] : list) a.push_back(pa), b.push_back(pb), c.push_back(pc);
    p.a = upload(a), p.b = upload(b), p.c = upload(c);
    im.products.push_back(std::move(p));
  }
  CUSOLVER_CHECK(cusolverDnCreate(&im.solver));
  CUBLAS_CHECK(cublasCreate(&im.blas));
}

NewtonMuonStatsDevice::~NewtonMuonStatsDevice() = default;

void NewtonMuonStatsDevice::accumulate(size_t stat, const Tensor& input) {
  const Impl::StatPlace& st = impl_->stats.at(stat);
  const int64_t width = st.blocks * st.n;
  if (input.device != Device::cuda || input.ndim != 2 || input.size(1) != width ||
      (input.dtype != DType::f32 && input.dtype != DType::bf16))
    throw std::invalid_argument("newton_muon: expected a (tokens, " + std::to_string(width) +
                                ") f32 or bf16 CUDA tensor, got " + input.shape_string() + " " +
                                dtype_name(input.dtype) + " on " + device_name(input.device));
  const int64_t tokens = input.size(0);
  if (tokens == 0) return;
  Impl::WidthGroup& g = impl_->groups[st.group];
  // A_b (n x n) += (1/tokens) X_b^T X_b, X_b the b-th n-wide column block (row stride width).
  batched_gemm({.trans_a = true, .m = st.n, .n = st.n, .k = tokens, .batch = st.blocks, .a = input.ptr,
                .lda = width, .stride_a = st.n, .b = input.ptr, .ldb = width, .stride_b = st.n,
                .d = g.acc.as<float>() + st.first * st.n * st.n, .ldd = st.n, .stride_d = st.n * st.n,
                .ab_type = input.dtype, .cd_type = DType::f32, .alpha = 1.0f / static_cast<float>(tokens),
                .beta = 1.0f});
  add_one_kernel<<<1, 1, 0, stream()>>>(st.count);
  CUDA_CHECK_LAUNCH();
}

void NewtonMuonStatsDevice::refresh(double beta, double ridge, double ridge_eps) {
  Impl& im = *impl_;
  CUSOLVER_CHECK(cusolverDnSetStream(im.solver, stream()));
  CUBLAS_CHECK(cublasSetStream(im.blas, stream()));
  for (Impl::WidthGroup& g : im.groups) {
    const int64_t n = g.n, nn = n * n;
    const auto* refs = g.refs.as<BlockRef>();
    const dim3 grid(blocks_for(nn), static_cast<unsigned>(g.blocks));
    ema_kernel<<<grid, kThreads, 0, stream()>>>(refs, nn, static_cast<float>(beta));
    CUDA_CHECK_LAUNCH();
    ridge_kernel<<<static_cast<unsigned>(g.blocks), kRidgeThreads, 0, stream()>>>(refs, n, ridge, ridge_eps);
    CUDA_CHECK_LAUNCH();
    const int ni = static_cast<int>(n), batch = static_cast<int>(g.blocks);
    CUSOLVER_CHECK(cusolverDnSpotrfBatched(im.solver, CUBLAS_FILL_MODE_LOWER, ni, g.work_ptrs.as<float*>(), ni,
                                           g.info.as<int>(), batch));
    const float one = 1.0f;
    // R = L^-1 (R = I on entry), then R = L^-T R. A failed block's L is garbage and so is
    // its R; finalize_kernel replaces it by I.
    CUBLAS_CHECK(cublasStrsmBatched(im.blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                                    CUBLAS_DIAG_NON_UNIT, ni, ni, &one, g.work_ptrs.as<float* const>(), ni,
                                    g.rhs_ptrs.as<float* const>(), ni, batch));
    CUBLAS_CHECK(cublasStrsmBatched(im.blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T,
                                    CUBLAS_DIAG_NON_UNIT, ni, ni, &one, g.work_ptrs.as<float* const>(), ni,
                                    g.rhs_ptrs.as<float* const>(), ni, batch));
    finalize_kernel<<<grid, kThreads, 0, stream()>>>(refs, g.info.as<int>(), n, batch,
                                                     im.failures.as<long long>());
    CUDA_CHECK_LAUNCH();
  }
}

std::vector<Tensor> NewtonMuonStatsDevice::accumulators() {
  std::vector<Tensor> out;
  for (Impl::WidthGroup& g : impl_->groups)
    out.push_back(Tensor::of(g.acc.as<float>(), {g.blocks * g.n * g.n}, Device::cuda));
  out.push_back(Tensor::of(impl_->counts.as<float>(), {static_cast<int64_t>(impl_->stats.size())}, Device::cuda));
  return out;
}

void NewtonMuonStatsDevice::precondition() {
  Impl& im = *impl_;
  CUBLAS_CHECK(cublasSetStream(im.blas, stream()));
  const float one = 1.0f, zero = 0.0f;
  for (Impl::Product& p : im.products) {
    // Row-major out (rows x n, ld width) = G (rows x n, ld width) P (n x n). Column-major,
    // out^T = P^T G^T: cuBLAS's C (n x rows, ld width) = A (P, n x n) B (G, n x rows, ld width).
    CUBLAS_CHECK(cublasGemmBatchedEx(im.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(p.n),
                                     static_cast<int>(p.rows), static_cast<int>(p.n), &one,
                                     p.a.as<const void* const>(), CUDA_R_32F, static_cast<int>(p.n),
                                     p.b.as<const void* const>(), CUDA_R_32F, static_cast<int>(p.width), &zero,
                                     p.c.as<void* const>(), CUDA_R_32F, static_cast<int>(p.width),
                                     static_cast<int>(p.batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

int64_t NewtonMuonStatsDevice::failures() const {
  long long host = 0;
  CUDA_CHECK(cudaMemcpyAsync(&host, impl_->failures.data(), sizeof(host), cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  return static_cast<int64_t>(host);
}

void NewtonMuonStatsDevice::set_failures(int64_t failures) {
  const long long value = failures;
  copy_state(impl_->failures.data(), &value, sizeof(value));
}

Tensor NewtonMuonStatsDevice::covariance(size_t stat) {
  const Impl::StatPlace& st = impl_->stats.at(stat);
  return Tensor::of(impl_->groups[st.group].cov.as<float>() + st.first * st.n * st.n, {st.blocks, st.n, st.n},
                    Device::cuda);
}

Tensor NewtonMuonStatsDevice::inverse(size_t stat) {
  const Impl::StatPlace& st = impl_->stats.at(stat);
  return Tensor::of(impl_->groups[st.group].inv.as<float>() + st.first * st.n * st.n, {st.blocks, st.n, st.n},
                    Device::cuda);
}

size_t NewtonMuonStatsDevice::state_bytes() const { return impl_->state; }

}  // namespace speedrun::cuda
