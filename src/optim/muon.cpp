#include "optim/muon.h"

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

double muon_momentum(const config::MuonSettings& s, int64_t step) {
  return warmed_up_momentum(s.momentum, s.momentum_warmup_start, s.momentum_warmup_steps, step);
}

MuonMatrixUpdate::MuonMatrixUpdate(const config::MuonSettings& s) : settings_(s), ns_(newton_schulz_spec(s)) {}

void MuonMatrixUpdate::apply(float* p, const float* g, float* buf, int64_t rows, int64_t cols, int64_t step,
                             double lr, double wd) {
  const int64_t n = rows * cols;
  const float mu = static_cast<float>(muon_momentum(settings_, step));
  const float decay = static_cast<float>(1.0 - lr * wd);
  const bool nesterov = settings_.nesterov;
  update_.resize(static_cast<size_t>(n));
  orth_.resize(static_cast<size_t>(n));
  float* update = update_.data();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    buf[i] += (1.0f - mu) * (g[i] - buf[i]);                    // lerp(buf, G, 1 - mu)
    update[i] = nesterov ? g[i] + mu * (buf[i] - g[i]) : buf[i];  // lerp(G, buf, mu)
  }
  newton_schulz_cpu(update_.data(), orth_.data(), rows, cols, ns_);
  const float scale = static_cast<float>(std::sqrt(std::max(1.0, static_cast<double>(rows) / cols)));
  const float step_size = static_cast<float>(lr);
  const bool bf16 = ns_.bf16;  // upstream scales the bf16 update in bf16
  const float* orth = orth_.data();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float u = bf16 ? round_to_bf16(orth[i] * scale) : orth[i] * scale;
    p[i] = p[i] * decay - step_size * u;
  }
}

cuda::NewtonSchulzCoefficients device_newton_schulz(const config::MuonSettings& s) {
  const NewtonSchulzSpec spec = newton_schulz_spec(s);
  // "auto" is bf16 on the GPU (fp32 on the CPU).
  return {spec.a, spec.b, spec.c, spec.steps, s.ns_precision != "fp32"};
}

namespace {

class Muon final : public Optimizer {
 public:
  Muon(const config::OptimizerConfig& entry, std::vector<ParamRef> params, const OptimizerContext& context)
      : lr_(entry.lr),
        wd_(entry.weight_decay),
        settings_(std::get<config::MuonSettings>(entry.settings)),
        update_(settings_),
        params_(std::move(params)),
        sharding_(params_, context.comm),
        comm_(context.comm) {
    if (group_device(params_, "muon") == Device::cuda) {
      // The matrices this rank owns, batched by shape, reading their summed gradients.
      device_sharding_ = std::make_unique<DeviceMatrixSharding>(params_, context.comm);
      device_ = std::make_unique<cuda::MuonDevice>(device_sharding_->owned_matrices(), device_newton_schulz(settings_),
                                                   settings_.nesterov);
      return;
    }
    for (size_t k = 0; k < params_.size(); ++k) {
      // Momentum only for the matrices this rank updates.
      buf_.emplace_back(sharding_.owns(k) ? static_cast<size_t>(params_[k].param.numel()) : 0, 0.0f);
    }
  }

  const char* type() const override { return "muon"; }

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
    if (device_) {
      device_sharding_->reduce();
      device_->step(static_cast<float>(muon_momentum(settings_, step)), lr_ * lr_factor, wd_);
      device_sharding_->gather();
      return;
    }
    sharding_.step([&](size_t k, const float* grad) {
      const Tensor& pt = params_[k].param;
      update_.apply(pt.data<float>(), grad, buf_[k].data(), pt.size(0), pt.size(1), step, lr_ * lr_factor, wd_);
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
  config::MuonSettings settings_;
  MuonMatrixUpdate update_;
  std::vector<ParamRef> params_;
  MatrixSharding sharding_;
  dist::Communicator* comm_;
  std::vector<std::vector<float>> buf_;
  std::unique_ptr<DeviceMatrixSharding> device_sharding_;  // set when the group lives on CUDA
  std::unique_ptr<cuda::MuonDevice> device_;
};

}  // namespace

std::unique_ptr<Optimizer> make_muon(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context) {
  return std::make_unique<Muon>(entry, std::move(params), context);
}

}  // namespace speedrun::optim
