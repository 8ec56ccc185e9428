// MatrixSharding (matrix_sharding.h) for matrices on CUDA: the same owners and rounds
// (largest shape first, matrix i to rank i mod R), with device buffers and device-to-device
// copies on cuda::stream() in place of the host memcpys. The collectives go through the
// Communicator (NCCL for device buffers).
//
// Unlike the CPU class, the reduction and the gather are separate calls around the update,
// so that the device optimizers update all of this rank's matrices at once (batched): each
// round's summed gradient lands in its own device buffer, whose address is fixed for the
// object's lifetime (the optimizers' pointer tables are uploaded once). The result equals
// the CPU's round-by-round order: a matrix's update reads only its own gradient.
//
// With one process nothing is copied: grad(k) is the parameter's own gradient.
//
// Overlap (attach): as MatrixSharding::attach, each round's reduce-scatter starts on the
// communication stream once its matrices' gradients are final, from a send buffer of its
// own; reduce() then only orders the compute stream after every round's collective, and
// gather() starts every round's all-gather before waiting for any.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "dist/communicator.h"
#include "dist/grad_buckets.h"
#include "optim/optimizer.h"

namespace speedrun::cuda {
struct DeviceMatrix;  // kernels/optim/optim_cuda.h
}

namespace speedrun::optim {

class DeviceMatrixSharding {
 public:
  DeviceMatrixSharding(const std::vector<ParamRef>& params, dist::Communicator* comm);

  bool owns(size_t k) const { return owner_[k] == comm_->rank(); }
  // Parameter k's gradient summed over ranks after reduce() (device, rows x cols); only for
  // matrices this rank owns.
  const float* grad(size_t k) const { return grad_[k]; }
  // The matrices this rank owns as the device optimizers take them: each parameter with
  // its summed gradient and its bf16 weight copy (null when none: ParamRef::copy). The
  // owner's parameter is never overwritten by gather(), so its copy stays current; the
  // other ranks' copies of the matrix are stale after gather() (weight_copies_written
  // lists owned matrices only).
  std::vector<cuda::DeviceMatrix> owned_matrices() const;
  // Every round's reduce-scatter of the local gradients (or, attached, the wait for them).
  void reduce();
  // Registers every round's reduce-scatter with `bucketer` (several processes only).
  void attach(dist::GradBucketer& bucketer);
  // Bytes of its device buffers: each round's block (and, attached, its send buffer), the
  // shared send and gather buffers.
  size_t buffer_bytes() const {
    size_t b = send_.bytes() + gathered_.bytes();
    for (const Round& r : rounds_) b += r.mine.bytes() + r.send.bytes();
    return b;
  }
  // Every round's all-gather of the updated matrices into every rank's parameters.
  void gather();

 private:
  struct Round {
    size_t base = 0, count = 0;
    int64_t width = 0;  // elements per block: the round's largest matrix
    Buffer mine;        // this rank's block: its summed gradient, then its updated matrix
    Buffer send;        // attached only: world x width, the round's local gradients
    size_t id = 0;      // its collective in bucketer_
  };
  // Packs the round's local gradients into `send` (world x width, zero-padded) and
  // returns the reduce-scatter's send and receive tensors.
  std::pair<Tensor, Tensor> pack(const Round& r, float* send) const;
  // Copies the other ranks' updated matrices of round r out of its gathered blocks.
  void scatter_gathered(const Round& r, const float* gathered) const;
  const std::vector<ParamRef>& params_;
  dist::Communicator* comm_;
  std::vector<size_t> order_;
  std::vector<int> owner_;
  std::vector<const float*> grad_;
  std::vector<Round> rounds_;
  Buffer send_, gathered_;  // world x the largest round width
  dist::GradBucketer* bucketer_ = nullptr;
};

}  // namespace speedrun::optim
