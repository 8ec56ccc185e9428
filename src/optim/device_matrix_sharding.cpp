#include "optim/device_matrix_sharding.h"

#include <algorithm>
#include <stdexcept>

#include "optim/device_path.h"
#include "optim/matrix_sharding.h"
#include "kernels/optim/optim_cuda.h"

namespace speedrun::optim {

DeviceMatrixSharding::DeviceMatrixSharding(const std::vector<ParamRef>& params, dist::Communicator* comm)
    : params_(params),
      comm_(comm),
      order_(MatrixSharding::shape_order(params)),
      owner_(params.size(), 0),
      grad_(params.size(), nullptr) {
  const size_t world = static_cast<size_t>(comm_->world());
  for (size_t i = 0; i < order_.size(); ++i) owner_[order_[i]] = static_cast<int>(i % world);
  if (world == 1) {
    for (size_t k = 0; k < params_.size(); ++k) grad_[k] = params_[k].grad.data<float>();
    return;
  }
  const size_t rank = static_cast<size_t>(comm_->rank());
  int64_t widest = 0;
  for (size_t base = 0; base < order_.size(); base += world) {
    Round r;
    r.base = base;
    r.count = std::min(world, order_.size() - base);
    for (size_t j = 0; j < r.count; ++j) r.width = std::max(r.width, params_[order_[base + j]].param.numel());
    r.mine = Buffer(Device::cuda, static_cast<size_t>(r.width) * sizeof(float));
    if (rank < r.count) grad_[order_[base + rank]] = r.mine.as<float>();
    widest = std::max(widest, r.width);
    rounds_.push_back(std::move(r));
  }
  send_ = Buffer(Device::cuda, world * static_cast<size_t>(std::max<int64_t>(widest, 1)) * sizeof(float));
  gathered_ = Buffer(Device::cuda, send_.bytes());
}

std::pair<Tensor, Tensor> DeviceMatrixSharding::pack(const Round& r, float* send) const {
  const int64_t world = comm_->world();
  // Block j: this rank's local gradient of the round's j-th matrix, zero-padded to width.
  cuda::zero_device_async(send, world * r.width);
  for (size_t j = 0; j < r.count; ++j) {
    const Tensor& g = params_[order_[r.base + j]].grad;
    cuda::copy_device_async(send + static_cast<int64_t>(j) * r.width, g.data<float>(), g.numel());
  }
  return {Tensor::of(send, {world * r.width}, Device::cuda), Tensor::of(r.mine.as<float>(), {r.width}, Device::cuda)};
}

void DeviceMatrixSharding::attach(dist::GradBucketer& bucketer) {
  bucketer_ = &bucketer;
  const size_t world = static_cast<size_t>(comm_->world());
  for (Round& r : rounds_) {
    r.send = Buffer(Device::cuda, world * static_cast<size_t>(r.width) * sizeof(float));
    std::vector<size_t> indices;
    for (size_t j = 0; j < r.count; ++j) indices.push_back(params_[order_[r.base + j]].index);
    r.id = bucketer.add(std::move(indices), [this, &r] {
      const auto [send, recv] = pack(r, r.send.as<float>());
      return comm_->start_reduce_scatter_sum(send, recv);
    });
  }
}

void DeviceMatrixSharding::reduce() {
  for (const Round& r : rounds_) {
    if (bucketer_ != nullptr) {
      bucketer_->wait(r.id);
      continue;
    }
    const auto [send, recv] = pack(r, send_.as<float>());
    comm_->reduce_scatter_sum(send, recv);
  }
}

void DeviceMatrixSharding::gather() {
  const int64_t world = comm_->world();
  const size_t rank = static_cast<size_t>(comm_->rank());
  // Attached: every round's all-gather is started (into its send buffer, free once its
  // reduce-scatter completed) before any is waited for, so the host never blocks per round.
  std::vector<std::unique_ptr<dist::Request>> gathers;
  for (Round& r : rounds_) {
    // This rank's contribution: its updated matrix (or its block's stale contents as padding
    // when the round has no matrix for it, which nobody reads).
    if (rank < r.count) {
      const Tensor& p = params_[order_[r.base + rank]].param;
      cuda::copy_device_async(r.mine.as<float>(), p.data<float>(), p.numel());
    }
    if (bucketer_ != nullptr) {
      gathers.push_back(comm_->start_all_gather(Tensor::of(r.mine.as<float>(), {r.width}, Device::cuda),
                                                Tensor::of(r.send.as<float>(), {world * r.width}, Device::cuda)));
      continue;
    }
    float* gathered = gathered_.as<float>();
    comm_->all_gather(Tensor::of(r.mine.as<float>(), {r.width}, Device::cuda),
                      Tensor::of(gathered, {world * r.width}, Device::cuda));
    scatter_gathered(r, gathered);
  }
  for (size_t i = 0; i < gathers.size(); ++i) {
    gathers[i]->wait();  // the compute stream waits; the copies below follow it
    scatter_gathered(rounds_[i], rounds_[i].send.as<float>());
  }
}

void DeviceMatrixSharding::scatter_gathered(const Round& r, const float* gathered) const {
  const size_t rank = static_cast<size_t>(comm_->rank());
  for (size_t j = 0; j < r.count; ++j) {
    if (j == rank) continue;
    const Tensor& p = params_[order_[r.base + j]].param;
    cuda::copy_device_async(p.data<float>(), gathered + static_cast<int64_t>(j) * r.width, p.numel());
  }
}

std::vector<cuda::DeviceMatrix> DeviceMatrixSharding::owned_matrices() const {
  std::vector<cuda::DeviceMatrix> mats;
  for (size_t k = 0; k < params_.size(); ++k)
    if (owns(k))
      mats.push_back({params_[k].param.data<float>(), grad(k), params_[k].param.size(0), params_[k].param.size(1),
                      copy_pointer(params_[k])});
  return mats;
}

}  // namespace speedrun::optim
