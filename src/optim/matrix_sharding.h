// Sharded work for the matrix optimizers (Muon, Newton-Muon, RMNP), as modded-nanogpt
// shards Muon: the group's matrices are sorted by shape, largest first (stable), and
// rank r of R updates matrices r, r+R, r+2R, ... In rounds of R matrices, each rank
// receives the gradient of its matrix summed over ranks (one reduce-scatter), updates
// it, and the updated matrices are all-gathered. Blocks are padded to the round's
// largest matrix, as upstream pads its all_gather list; one collective per round
// rather than one broadcast per matrix keeps the message count at n/R.
//
// With one process the matrices are updated in place in group order with their own
// gradients: no copies, bit-identical to the unsharded optimizer.
//
// Overlap (attach): each round's reduce-scatter is registered with a GradBucketer and
// starts as soon as the round's matrices' gradients are final, from a send buffer of
// its own (world x the round's width: about one more copy of the group's gradients);
// step() waits for it before the round's update; the round's all-gather then starts
// non-blocking (into its send buffer) and runs during the next rounds' updates. The
// collectives and their buffers' layout are those of the blocking path, so the sums are
// the same.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "dist/communicator.h"
#include "dist/grad_buckets.h"
#include "optim/optimizer.h"

namespace speedrun::optim {

class MatrixSharding {
 public:
  MatrixSharding(const std::vector<ParamRef>& params, dist::Communicator* comm);

  // The parameter indices in sharding order: largest shape first, stable. Matrix i of
  // this order belongs to rank i mod world, in round i / world.
  static std::vector<size_t> shape_order(const std::vector<ParamRef>& params);

  // Whether this rank updates parameter k (so needs optimizer state for it).
  bool owns(size_t k) const { return owner_[k] == comm_->rank(); }
  // The rank that updates parameter k (DeviceMatrixSharding assigns the same).
  int owner(size_t k) const { return owner_[k]; }

  // Calls update(k, grad) for every parameter k this rank owns, `grad` its gradient
  // summed over ranks (rows x cols, row-major); update writes params[k].param in place.
  // Afterwards every rank holds every updated parameter.
  void step(const std::function<void(size_t k, const float* grad)>& update);

  // Registers every round's reduce-scatter with `bucketer` (several processes only).
  void attach(dist::GradBucketer& bucketer);

  // Bytes of its collective buffers as allocated so far (sized at attach and the first step):
  // attached, each round's send (world x width) and receive (width) blocks; blocking, one
  // send, receive and gather buffer for the largest round, reused.
  size_t buffer_bytes() const;

 private:
  struct Round {
    size_t base = 0, count = 0;
    int64_t width = 0;              // elements per block: the round's largest matrix
    std::vector<float> send, recv;  // attached only
    size_t id = 0;                  // its collective in bucketer_
  };
  // Block j of `send` (world x width): this rank's local gradient of the round's j-th matrix.
  void pack(const Round& r, std::vector<float>& send) const;
  // Copies the other ranks' updated matrices of round r out of its gathered blocks.
  void scatter_gathered(const Round& r, const float* gathered) const;

  const std::vector<ParamRef>& params_;
  dist::Communicator* comm_;
  std::vector<size_t> order_;  // parameter indices, largest shape first
  std::vector<int> owner_;     // per parameter
  std::vector<Round> rounds_;
  std::vector<float> send_, recv_, gathered_;
  dist::GradBucketer* bucketer_ = nullptr;
};

}  // namespace speedrun::optim
