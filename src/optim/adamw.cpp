#include "optim/adamw.h"

#include <cmath>

namespace speedrun::optim {

namespace {

class AdamW final : public Optimizer {
 public:
  AdamW(const config::OptimizerConfig& entry, std::vector<ParamRef> params)
      : lr_(entry.lr), wd_(entry.weight_decay), params_(std::move(params)) {
    const auto& s = std::get<config::AdamWSettings>(entry.settings);
    beta1_ = s.betas[0], beta2_ = s.betas[1], eps_ = s.eps;
    for (const ParamRef& p : params_) {
      if (p.param.device != Device::cpu) throw std::logic_error("adamw: the CUDA optimizer is not built yet");
      m_.emplace_back(static_cast<size_t>(p.param.numel()), 0.0f);
      v_.emplace_back(static_cast<size_t>(p.param.numel()), 0.0f);
    }
  }

  const char* type() const override { return "adamw"; }

  void step(int64_t step, double lr_factor) override {
    // torch's AdamW: its step count t starts at 1; scalars are computed in double and
    // the tensor math in the parameters' precision (fp32).
    const double lr = lr_ * lr_factor;
    const double t = static_cast<double>(step + 1);
    const float decay = static_cast<float>(1.0 - lr * wd_);
    const float b1 = static_cast<float>(beta1_), b2 = static_cast<float>(beta2_);
    const float step_size = static_cast<float>(lr / (1.0 - std::pow(beta1_, t)));
    const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2_, t)));
    const float eps = static_cast<float>(eps_);
    for (size_t k = 0; k < params_.size(); ++k) {
      float* p = params_[k].param.data<float>();
      const float* g = params_[k].grad.data<float>();
      float* m = m_[k].data();
      float* v = v_[k].data();
      const int64_t n = params_[k].param.numel();
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        p[i] *= decay;
        m[i] += (1.0f - b1) * (g[i] - m[i]);  // lerp(m, g, 1 - beta1), as torch >= 2.0
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
        p[i] -= step_size * m[i] / denom;
      }
    }
  }

  size_t state_bytes() const override {
    size_t n = 0;
    for (const auto& m : m_) n += 2 * m.size() * sizeof(float);
    return n;
  }

 private:
  double lr_, wd_, beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8;
  std::vector<ParamRef> params_;
  std::vector<std::vector<float>> m_, v_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context) {
  return std::make_unique<AdamW>(entry, std::move(params));
}

}  // namespace speedrun::optim
