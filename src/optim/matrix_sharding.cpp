#include "optim/matrix_sharding.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace speedrun::optim {

std::vector<size_t> MatrixSharding::shape_order(const std::vector<ParamRef>& params) {
  std::vector<size_t> order(params.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Upstream: sorted(params, key=lambda p: p.size(), reverse=True), a lexicographic
  // comparison of the shapes.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const Tensor &pa = params[a].param, &pb = params[b].param;
    return std::make_pair(pa.size(0), pa.size(1)) > std::make_pair(pb.size(0), pb.size(1));
  });
  return order;
}

MatrixSharding::MatrixSharding(const std::vector<ParamRef>& params, dist::Communicator* comm)
    : params_(params), comm_(comm), order_(shape_order(params)), owner_(params.size(), 0) {
  const int world = comm_->world();
  for (size_t i = 0; i < order_.size(); ++i) owner_[order_[i]] = static_cast<int>(i % static_cast<size_t>(world));
}

void MatrixSharding::step(const std::function<void(size_t, const float*)>& update) {
  const size_t world = static_cast<size_t>(comm_->world());
  if (world == 1) {
    for (size_t k = 0; k < params_.size(); ++k) update(k, params_[k].grad.data<float>());
    return;
  }
  const size_t rank = static_cast<size_t>(comm_->rank());
  for (size_t base = 0; base < order_.size(); base += world) {
    const size_t count = std::min(world, order_.size() - base);
    int64_t width = 0;
    for (size_t j = 0; j < count; ++j) width = std::max(width, params_[order_[base + j]].param.numel());
    const auto w = static_cast<size_t>(width);
    // Block j of the send buffer: this rank's local gradient of the round's j-th matrix.
    send_.assign(world * w, 0.0f);
    for (size_t j = 0; j < count; ++j) {
      const Tensor& g = params_[order_[base + j]].grad;
      std::memcpy(send_.data() + j * w, g.ptr, g.bytes());
    }
    recv_.resize(w);
    comm_->reduce_scatter_sum(Tensor::of(send_.data(), {static_cast<int64_t>(world * w)}),
                              Tensor::of(recv_.data(), {width}));
    // Reuse recv_ as this rank's contribution to the gather: its updated matrix (or
    // padding when the last round has no matrix for it).
    if (rank < count) {
      const size_t k = order_[base + rank];
      update(k, recv_.data());
      std::memcpy(recv_.data(), params_[k].param.ptr, params_[k].param.bytes());
    }
    gathered_.resize(world * w);
    comm_->all_gather(Tensor::of(recv_.data(), {width}), Tensor::of(gathered_.data(), {static_cast<int64_t>(world * w)}));
    for (size_t j = 0; j < count; ++j) {
      if (j == rank) continue;
      const Tensor& p = params_[order_[base + j]].param;
      std::memcpy(p.ptr, gathered_.data() + j * w, p.bytes());
    }
  }
}

}  // namespace speedrun::optim
