// Communicator: collective operations over the processes of a run, on flat buffers.
// Implementations: Local (one process: collectives are identities), MPI (CPU buffers)
// and NCCL (device buffers; host buffers such as loss sums still go through MPI).
// The trainer and the optimizers only see this interface.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace speedrun::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // "local", "mpi", "nccl": named in the identity line of every rank.
  virtual std::string name() const = 0;
  // Element-wise sum over ranks, in place (f32 or f64 tensors).
  virtual void all_reduce_sum(Tensor t) = 0;
  // Every rank contributes `send` (n elements); `recv` (world * n) gets them in rank order.
  virtual void all_gather(const Tensor& send, Tensor recv) = 0;
  // `send` (world * n) is summed over ranks; rank r receives block r into `recv` (n).
  virtual void reduce_scatter_sum(const Tensor& send, Tensor recv) = 0;
  // Rank `root`'s `t` is copied to every rank.
  virtual void broadcast(Tensor t, int root) = 0;
  virtual void barrier() = 0;
};

// The single-process communicator.
std::unique_ptr<Communicator> make_local_communicator();

// Over MPI_COMM_WORLD (MPI must be initialized: see dist::Session); host buffers only.
// Throws std::logic_error in a build without MPI.
std::unique_ptr<Communicator> make_mpi_communicator();

// NCCL for device buffers, one GPU per local rank (cudaSetDevice(local_rank)); the
// ncclUniqueId travels from rank 0 over `host`, which also carries every collective on
// host buffers. Throws std::logic_error in a build without CUDA, NCCL or MPI.
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host, int local_rank);

}  // namespace speedrun::dist
