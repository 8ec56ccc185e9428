// Device state and steps of the optimizers on CUDA (kernels/optim/*.cu), used by
// src/optim/{adamw,muon,newton_muon,rmnp}.cpp when the group's parameters live on
// Device::cuda. Plain C++: no CUDA header is included, so the optimizers include it in
// every build; a CPU-only build defines it in src/optim/optim_cuda_cpu_only.cpp, where
// constructing a class throws std::logic_error ("built without CUDA") — never reached.
//
// Every class owns its optimizer state in device memory (allocated once, at
// construction), issues all work on cuda::stream(), checks every call and launch, and
// never synchronizes the device inside a step. With several processes the optimizers
// (src/optim) add the collectives around these steps (NCCL on device buffers). Pointers handed to a constructor (the
// parameters, the gradients) must stay valid and fixed for the object's lifetime: the
// kernels' pointer tables are uploaded once.
//
// Arithmetic follows the CPU optimizers (src/optim/*.cpp) operation by operation, in
// fp32, with explicitly rounded intrinsics where the CPU code has no fused multiply-add
// (so the elementwise updates give the CPU's bits); the exceptions are stated per class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace speedrun::cuda {

// --- AdamW (kernels/optim/adamw.cu) --------------------------------------------------------
// The per-step scalars, computed on the host in double exactly as the CPU AdamW does.
struct AdamWScalars {
  float decay, b1, b2, step_size, bc2_sqrt, eps;
};

// A run of elements AdamW updates: n parameters at p (updated) with their gradient at g
// (f32, device). One process: a whole parameter and its gradient; several: the piece of a
// parameter inside this rank's ZeRO-1 shard and its reduce-scattered gradient.
// copy: null, or the model's bf16 copy of these n elements (Model::weight_copy), which the
// update kernel then writes from the new f32 value (round to nearest even: the bits of
// ops::convert), so that no separate conversion pass is needed. Never run on a GPU yet.
struct AdamWSegment {
  float* p = nullptr;
  const float* g = nullptr;
  int64_t n = 0;
  void* copy = nullptr;  // bf16 (n), device, or null
};

// One fused multi-tensor launch per step over all the segments: they are cut into chunks
// of up to 64 Ki elements, each chunk one thread block; the chunk table (param, grad, m, v
// pointers and length) is uploaded at construction. m and v live in one flat device
// buffer, the segments' elements in order.
class AdamWDevice {
 public:
  explicit AdamWDevice(const std::vector<AdamWSegment>& segments);
  ~AdamWDevice();
  void step(const AdamWScalars& s);
  size_t state_bytes() const;
  // The moments as f32 device tensors of the segments' total length, elements in segment
  // order (for checkpoints: copied to and from the host with copy_state).
  Tensor first_moment();
  Tensor second_moment();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- Muon (kernels/optim/muon.cu, Newton-Schulz through kernels/optim/batched_gemm.cu) ------------
struct NewtonSchulzCoefficients {
  double a = 2.0, b = -1.5, c = 0.5;
  int64_t steps = 12;
  bool bf16 = true;  // the iteration's storage type: bf16 (default on the GPU) or f32
};

// One matrix of a matrix optimizer: its f32 device parameter (rows x cols, updated in
// place) and where its gradient is read each step (the raw gradient, or Newton-Muon's
// preconditioned copy).
// copy: null, or the model's bf16 copy of the matrix (Model::weight_copy, rows x cols),
// which the update kernel writes from the new f32 value (as AdamWSegment::copy; never run
// on a GPU yet).
struct DeviceMatrix {
  float* param = nullptr;
  const float* grad = nullptr;
  int64_t rows = 0, cols = 0;
  void* copy = nullptr;  // bf16, device, or null
};

// Muon over a group's matrices, batched by shape: matrices of the same (rows, cols)
// share one launch of every kernel and one strided-batched cuBLASLt GEMM per product.
//   momentum + Nesterov kernel (writes X, the iteration's input, in its storage type)
//   -> per-matrix sum of squares (fixed-order partials) -> X /= (||X||_F + 1e-7)
//   -> steps x { A = X X^T; B = c A A + b A; X = B X + a X } (3 GEMMs, no elementwise pass)
//   -> update kernel: p = p (1 - lr wd) - lr round(X sqrt(max(1, rows/cols))).
// Tall matrices (rows > cols) are never transposed: the iteration runs on X^T with the
// products' operands swapped (A = X^T X, X = X B^T + a X), which is the transpose of the
// CPU's iteration on the transposed matrix.
class MuonDevice {
 public:
  MuonDevice(const std::vector<DeviceMatrix>& mats, const NewtonSchulzCoefficients& ns, bool nesterov);
  ~MuonDevice();
  // mu: this step's momentum; lr: the scheduled lr; wd: the group's weight decay.
  void step(float mu, double lr, double wd);
  size_t state_bytes() const;
  // The momentum of each matrix, in the constructor's order, as (rows, cols) f32 device
  // tensors (for checkpoints).
  std::vector<Tensor> momentum();
  // Floating-point operations of the Newton-Schulz GEMMs of one step (2mnk per product).
  double newton_schulz_flops() const;
  // Only the Newton-Schulz GEMMs of one step, on whatever the iteration buffers hold (the
  // benchmark times them; the GEMMs' speed does not depend on the values).
  void newton_schulz_only();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- Newton-Muon's input statistics (kernels/optim/newton_muon.cu) -------------------------
// One statistic: `blocks` independent n x n second moments over contiguous n-wide
// column blocks of the captured input (src/optim/input_statistic.h has the semantics).
struct StatisticShape {
  int64_t block_width = 0, blocks = 1;
};

// The right-multiplication of one gradient by its statistic's blockdiag(P).
struct PreconditionJob {
  const float* grad = nullptr;  // rows x (blocks * block_width), f32 device
  float* out = nullptr;         // same shape
  int64_t rows = 0;
  size_t stat = 0;
};

// All statistics of one Newton-Muon group. Per statistic, on the device: A (the
// accumulator, f32), its count (one f32, as the CPU keeps it after A), C (the EMA), P
// (the inverse used every step). A refresh is a fixed sequence of launches with no host
// synchronization: EMA kernel (reads the count on the device), ridge kernel (trace in
// the CPU's order, work = C + r I, P's right-hand side = I), cusolverDnSpotrfBatched over
// all blocks of one width, two cublasStrsmBatched (P = L^-T L^-1), and a kernel that
// reads the device `info` array and writes either the symmetrized inverse or I into P
// and adds the failures to a device counter.
class NewtonMuonStatsDevice {
 public:
  NewtonMuonStatsDevice(const std::vector<StatisticShape>& stats, const std::vector<PreconditionJob>& jobs,
                        double initial_scale);
  ~NewtonMuonStatsDevice();
  // input: (tokens, blocks * block_width) f32 or bf16 on the device; A += X^T X / tokens
  // through one batched GEMM with fp32 accumulation, count += 1. The GEMM is queued on
  // cuda::stream(), not finished, when this returns: the model's later kernels that reuse
  // the input's memory are ordered after it on the same stream.
  void accumulate(size_t stat, const Tensor& input);
  void refresh(double beta, double ridge, double ridge_eps);
  // The accumulators and counts as f32 device tensors: what the ranks sum (all-reduce)
  // before a refresh.
  std::vector<Tensor> accumulators();
  // Every job's out = grad blockdiag(P); fp32 GEMMs, batched by shape.
  void precondition();
  // The failures counted so far (copies one integer to the host: synchronizes; for metrics).
  int64_t failures() const;
  // Sets the failure counter (restoring a checkpoint).
  void set_failures(int64_t failures);
  // Statistic `stat`'s EMA C and inverse P as (blocks, n, n) f32 device tensors (for
  // checkpoints; A and the count are zero at every step boundary).
  Tensor covariance(size_t stat);
  Tensor inverse(size_t stat);
  size_t state_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- RMNP (kernels/optim/rmnp.cu) ------------------------------------------------------------
// One launch over every row of every matrix (a block per row): momentum, Nesterov, the
// row's norm (summed in double, fixed order), the scaling, weight decay and the update.
class RmnpDevice {
 public:
  RmnpDevice(const std::vector<DeviceMatrix>& mats, bool nesterov);
  ~RmnpDevice();
  void step(float mu, float eps, double lr, double wd);
  size_t state_bytes() const;
  // The momentum of each matrix, in the constructor's order, as (rows, cols) f32 device
  // tensors (for checkpoints).
  std::vector<Tensor> momentum();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- test hook -------------------------------------------------------------------------------
// When on, the device optimizers constructed afterwards fill their scratch buffers
// (Newton-Schulz iterates and products, partial sums, factorization and solve buffers,
// preconditioned gradients) with NaN instead of zeros, so that a kernel reading scratch
// nobody wrote first shows up as NaN in the parameters. Optimizer state (moments,
// momentum, statistics) always starts at zero, as on the CPU.
void set_poison_scratch(bool on);
bool poison_scratch();

// --- shared helpers --------------------------------------------------------------------------
// dst = src (n floats, device to device) on cuda::stream(), asynchronous.
void copy_device_async(float* dst, const float* src, int64_t n);
// A synchronous copy of `bytes` between host and device memory once everything issued on
// cuda::stream() has finished (checkpoints read and write optimizer state with it).
void copy_state(void* dst, const void* src, size_t bytes);
// dst = 0 (n floats) on cuda::stream(), asynchronous.
void zero_device_async(float* dst, int64_t n);

// Median milliseconds of `reps` calls of fn() timed with CUDA events on cuda::stream()
// after `warmup` untimed calls (synchronizes once per call to read the events).
double time_device_ms(const std::function<void()>& fn, int warmup, int reps);

}  // namespace speedrun::cuda
