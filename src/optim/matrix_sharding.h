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
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "dist/communicator.h"
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

 private:
  const std::vector<ParamRef>& params_;
  dist::Communicator* comm_;
  std::vector<size_t> order_;  // parameter indices, largest shape first
  std::vector<int> owner_;     // per parameter
  std::vector<float> send_, recv_, gathered_;
};

}  // namespace speedrun::optim
