#include "optim/muon.h"

#include <algorithm>
#include <cmath>

#include "optim/newton_schulz.h"

namespace speedrun::optim {

double muon_momentum(const config::MuonSettings& s, int64_t step) {
  if (!s.momentum_warmup_start || s.momentum_warmup_steps <= 0) return s.momentum;
  const double frac = std::min(1.0, static_cast<double>(step) / static_cast<double>(s.momentum_warmup_steps));
  return (1.0 - frac) * *s.momentum_warmup_start + frac * s.momentum;
}

namespace {

class Muon final : public Optimizer {
 public:
  Muon(const config::OptimizerConfig& entry, std::vector<ParamRef> params)
      : lr_(entry.lr),
        wd_(entry.weight_decay),
        settings_(std::get<config::MuonSettings>(entry.settings)),
        ns_(newton_schulz_spec(settings_)),
        params_(std::move(params)) {
    for (const ParamRef& p : params_) {
      if (p.param.device != Device::cpu) throw std::logic_error("muon: the CUDA optimizer is not built yet");
      buf_.emplace_back(static_cast<size_t>(p.param.numel()), 0.0f);
    }
  }

  const char* type() const override { return "muon"; }

  void step(int64_t step, double lr_factor) override {
    const double lr = lr_ * lr_factor;
    const float mu = static_cast<float>(muon_momentum(settings_, step));
    const float decay = static_cast<float>(1.0 - lr * wd_);
    for (size_t k = 0; k < params_.size(); ++k) {
      const Tensor& pt = params_[k].param;
      const int64_t rows = pt.size(0), cols = pt.size(1), n = pt.numel();
      float* p = pt.data<float>();
      const float* g = params_[k].grad.data<float>();
      float* buf = buf_[k].data();
      update_.resize(static_cast<size_t>(n));
      orth_.resize(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        buf[i] += (1.0f - mu) * (g[i] - buf[i]);                            // lerp(buf, G, 1 - mu)
        update_[i] = settings_.nesterov ? g[i] + mu * (buf[i] - g[i]) : buf[i];  // lerp(G, buf, mu)
      }
      newton_schulz_cpu(update_.data(), orth_.data(), rows, cols, ns_);
      const float scale = static_cast<float>(std::sqrt(std::max(1.0, static_cast<double>(rows) / cols)));
      const float step_size = static_cast<float>(lr);
      const bool bf16 = ns_.bf16;  // upstream scales the bf16 update in bf16
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const float u = bf16 ? round_to_bf16(orth_[i] * scale) : orth_[i] * scale;
        p[i] = p[i] * decay - step_size * u;
      }
    }
  }

  size_t state_bytes() const override {
    size_t n = 0;
    for (const auto& b : buf_) n += b.size() * sizeof(float);
    return n;
  }

 private:
  double lr_, wd_;
  config::MuonSettings settings_;
  NewtonSchulzSpec ns_;
  std::vector<ParamRef> params_;
  std::vector<std::vector<float>> buf_;
  std::vector<float> update_, orth_;  // scratch
};

}  // namespace

std::unique_ptr<Optimizer> make_muon(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context) {
  return std::make_unique<Muon>(entry, std::move(params));
}

}  // namespace speedrun::optim
