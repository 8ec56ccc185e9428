// Communicator: collective operations over the processes of a run, on flat buffers.
// Implementations: Local (one process: collectives are identities), MPI (CPU buffers)
// and NCCL (device buffers; host buffers such as loss sums still go through MPI).
// The trainer and the optimizers only see this interface.
//
// Non-blocking collectives (start_*) return a Request; the buffers must stay alive and
// untouched until wait() returns. Every rank must start collectives (blocking or not) in
// the same order, as MPI requires; several may be outstanding at once. They let the
// gradient reduction overlap the backward pass (dist/grad_buckets.h, docs/distributed.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace speedrun::dist {

// A started collective.
class Request {
 public:
  virtual ~Request() = default;
  // Whether it has completed; never blocks. Calling it lets MPI progress the
  // collective while the caller computes (Open MPI's non-blocking collectives advance
  // only inside MPI calls).
  virtual bool test() = 0;
  // Returns once the result is in the receive buffer: for host buffers, readable now;
  // for device buffers, visible to all work issued on the compute stream
  // (cuda::stream()) after this call (the stream waits; the host does not).
  virtual void wait() = 0;
};

// A Request that completed when it was made (blocking fallbacks, one process).
std::unique_ptr<Request> completed_request();

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

  // Non-blocking forms of all_reduce_sum, reduce_scatter_sum and all_gather, same
  // buffers and results. The defaults run the blocking collective and return a completed request
  // (the local communicator: nothing to overlap).
  virtual std::unique_ptr<Request> start_all_reduce_sum(Tensor t) {
    all_reduce_sum(t);
    return completed_request();
  }
  virtual std::unique_ptr<Request> start_reduce_scatter_sum(const Tensor& send, Tensor recv) {
    reduce_scatter_sum(send, recv);
    return completed_request();
  }
  virtual std::unique_ptr<Request> start_all_gather(const Tensor& send, Tensor recv) {
    all_gather(send, recv);
    return completed_request();
  }
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
