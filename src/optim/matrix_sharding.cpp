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
  const size_t world = static_cast<size_t>(comm_->world());
  for (size_t i = 0; i < order_.size(); ++i) owner_[order_[i]] = static_cast<int>(i % world);
  if (world == 1) return;
  for (size_t base = 0; base < order_.size(); base += world) {
    Round r;
    r.base = base;
    r.count = std::min(world, order_.size() - base);
    for (size_t j = 0; j < r.count; ++j) r.width = std::max(r.width, params_[order_[base + j]].param.numel());
    rounds_.push_back(std::move(r));
  }
}

size_t MatrixSharding::buffer_bytes() const {
  size_t floats = send_.capacity() + recv_.capacity() + gathered_.capacity();
  for (const Round& r : rounds_) floats += r.send.capacity() + r.recv.capacity();
  return floats * sizeof(float);
}

void MatrixSharding::pack(const Round& r, std::vector<float>& send) const {
  const size_t world = static_cast<size_t>(comm_->world()), w = static_cast<size_t>(r.width);
  send.assign(world * w, 0.0f);
  for (size_t j = 0; j < r.count; ++j) {
    const Tensor& g = params_[order_[r.base + j]].grad;
    std::memcpy(send.data() + j * w, g.ptr, g.bytes());
  }
}

void MatrixSharding::attach(dist::GradBucketer& bucketer) {
  bucketer_ = &bucketer;
  const int64_t world = comm_->world();
  for (Round& r : rounds_) {
    r.recv.resize(static_cast<size_t>(r.width));
    std::vector<size_t> indices;
    for (size_t j = 0; j < r.count; ++j) indices.push_back(params_[order_[r.base + j]].index);
    r.id = bucketer.add(std::move(indices), [this, &r, world] {
      pack(r, r.send);
      return comm_->start_reduce_scatter_sum(Tensor::of(r.send.data(), {world * r.width}),
                                             Tensor::of(r.recv.data(), {r.width}));
    });
  }
}

void MatrixSharding::step(const std::function<void(size_t, const float*)>& update) {
  const size_t world = static_cast<size_t>(comm_->world());
  if (world == 1) {
    for (size_t k = 0; k < params_.size(); ++k) update(k, params_[k].grad.data<float>());
    return;
  }
  const size_t rank = static_cast<size_t>(comm_->rank());
  // Attached: each round's all-gather starts after its update and runs while the next
  // rounds update (as upstream's Muon gathers asynchronously); all are waited at the end.
  std::vector<std::unique_ptr<dist::Request>> gathers;
  for (Round& r : rounds_) {
    const int64_t width = r.width;
    const auto w = static_cast<size_t>(width);
    // This rank's block of the round, summed over ranks.
    std::vector<float>* recv = &recv_;
    if (bucketer_ != nullptr) {
      bucketer_->wait(r.id);
      recv = &r.recv;
    } else {
      pack(r, send_);
      recv_.resize(w);
      comm_->reduce_scatter_sum(Tensor::of(send_.data(), {static_cast<int64_t>(world * w)}),
                                Tensor::of(recv_.data(), {width}));
    }
    // Reuse the receive buffer as this rank's contribution to the gather: its updated
    // matrix (or padding when the last round has no matrix for it).
    if (rank < r.count) {
      const size_t k = order_[r.base + rank];
      update(k, recv->data());
      std::memcpy(recv->data(), params_[k].param.ptr, params_[k].param.bytes());
    }
    if (bucketer_ != nullptr) {
      // Into the round's send buffer: its reduce-scatter has completed, and the next
      // step's packing comes after this step's waits.
      gathers.push_back(comm_->start_all_gather(Tensor::of(recv->data(), {width}),
                                                Tensor::of(r.send.data(), {static_cast<int64_t>(world * w)})));
      continue;
    }
    gathered_.resize(world * w);
    comm_->all_gather(Tensor::of(recv->data(), {width}), Tensor::of(gathered_.data(), {static_cast<int64_t>(world * w)}));
    scatter_gathered(r, gathered_.data());
  }
  for (size_t i = 0; i < gathers.size(); ++i) {
    gathers[i]->wait();
    scatter_gathered(rounds_[i], rounds_[i].send.data());
  }
}

void MatrixSharding::scatter_gathered(const Round& r, const float* gathered) const {
  const size_t rank = static_cast<size_t>(comm_->rank()), w = static_cast<size_t>(r.width);
  for (size_t j = 0; j < r.count; ++j) {
    if (j == rank) continue;
    const Tensor& p = params_[order_[r.base + j]].param;
    std::memcpy(p.ptr, gathered + j * w, p.bytes());
  }
}

}  // namespace speedrun::optim
