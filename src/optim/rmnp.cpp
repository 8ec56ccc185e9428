#include "optim/rmnp.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "optim/device_matrix_sharding.h"
#include "optim/device_path.h"
#include "optim/matrix_sharding.h"
#include "optim/momentum_warmup.h"
#include "optim/optimizer_state.h"
#include "kernels/optim/optim_cuda.h"

namespace speedrun::optim {

namespace {

class Rmnp final : public Optimizer {
 public:
  Rmnp(const config::OptimizerConfig& entry, std::vector<ParamRef> params, const OptimizerContext& context)
      : lr_(entry.lr),
        wd_(entry.weight_decay),
        settings_(std::get<config::RmnpSettings>(entry.settings)),
        params_(std::move(params)),
        sharding_(params_, context.comm),
        comm_(context.comm) {
    if (group_device(params_, "rmnp") == Device::cuda) {
      device_sharding_ = std::make_unique<DeviceMatrixSharding>(params_, context.comm);
      device_ = std::make_unique<cuda::RmnpDevice>(device_sharding_->owned_matrices(), settings_.nesterov);
      return;
    }
    for (size_t k = 0; k < params_.size(); ++k) {
      buf_.emplace_back(sharding_.owns(k) ? static_cast<size_t>(params_[k].param.numel()) : 0, 0.0f);
    }
  }

  const char* type() const override { return "rmnp"; }

  std::vector<size_t> weight_copies_written() const override {
    if (!device_sharding_) return {};
    return copies_written(params_, [this](size_t k) { return device_sharding_->owns(k); });
  }

  void overlap_reduction(dist::GradBucketer& bucketer) override {
    if (device_sharding_)
      device_sharding_->attach(bucketer);
    else
      sharding_.attach(bucketer);
  }

  void step(int64_t step, double lr_factor) override {
    // The step's momentum (the warm-up when configured), on the CPU and the device alike.
    const float mu = static_cast<float>(
        warmed_up_momentum(settings_.momentum, settings_.momentum_warmup_start, settings_.momentum_warmup_steps, step));
    const float eps = static_cast<float>(settings_.eps);
    const bool nesterov = settings_.nesterov;
    const double lr = lr_ * lr_factor;
    const float decay = static_cast<float>(1.0 - lr * wd_);
    if (device_) {
      device_sharding_->reduce();
      device_->step(mu, eps, lr, wd_);
      device_sharding_->gather();
      return;
    }
    sharding_.step([&](size_t k, const float* g) {
      const Tensor& pt = params_[k].param;
      const int64_t rows = pt.size(0), cols = pt.size(1);
      float* p = pt.data<float>();
      float* buf = buf_[k].data();
      const float step_size =
          static_cast<float>(lr * std::sqrt(std::max(1.0, static_cast<double>(rows) / static_cast<double>(cols))));
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < rows; ++i) {
        float* br = buf + i * cols;
        const float* gr = g + i * cols;
        // The row's update is needed twice (its norm, then the step): a first pass updates
        // the momentum and accumulates the norm in double, a second recomputes U and steps.
        double sum_sq = 0.0;
        for (int64_t j = 0; j < cols; ++j) {
          br[j] = mu * br[j] + gr[j];
          const float u = nesterov ? gr[j] + mu * br[j] : br[j];
          sum_sq += static_cast<double>(u) * u;
        }
        const float inv_norm = 1.0f / std::max(static_cast<float>(std::sqrt(sum_sq)), eps);
        float* pr = p + i * cols;
        for (int64_t j = 0; j < cols; ++j) {
          const float u = nesterov ? gr[j] + mu * br[j] : br[j];
          pr[j] = pr[j] * decay - step_size * (u * inv_norm);
        }
      }
    });
  }

  size_t communication_bytes() const override {
    return device_sharding_ ? device_sharding_->buffer_bytes() : sharding_.buffer_bytes();
  }

  size_t state_bytes() const override {
    if (device_) return device_->state_bytes();
    size_t n = 0;
    for (const auto& b : buf_) n += b.size() * sizeof(float);
    return n;
  }

  std::vector<StateTensor> export_state() override {
    return export_momentum(params_, sharding_, *comm_, buf_, device_ ? device_->momentum() : std::vector<Tensor>{});
  }

  void import_state(const StateSource& source) override {
    import_momentum(source, params_, sharding_, buf_, device_ ? device_->momentum() : std::vector<Tensor>{});
  }

 private:
  double lr_, wd_;
  config::RmnpSettings settings_;
  std::vector<ParamRef> params_;
  MatrixSharding sharding_;
  dist::Communicator* comm_;
  std::vector<std::vector<float>> buf_;
  std::unique_ptr<DeviceMatrixSharding> device_sharding_;  // set when the group lives on CUDA
  std::unique_ptr<cuda::RmnpDevice> device_;
};

}  // namespace

std::unique_ptr<Optimizer> make_rmnp(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context) {
  return std::make_unique<Rmnp>(entry, std::move(params), context);
}

}  // namespace speedrun::optim
