#include "optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "build_info.h"
#include "optim/device_path.h"
#if SPEEDRUN_HAVE_CUDA
#include "kernels/optim_cuda.h"
#endif

namespace speedrun::optim {

namespace {

// AdamW with ZeRO-1 sharding across ranks. The group's parameters, concatenated in
// group order, form one flat index space of `total` elements, padded to R equal
// shards; rank r keeps the moments of shard r only. A step reduce-scatters the local
// gradients (rank r receives shard r summed over ranks), updates its shard of the
// parameters and all-gathers them. With one process the shard is everything and the
// gradients are read in place: no copies, the same arithmetic as unsharded AdamW.
// On CUDA (one process), the moments live on the device and a step is one fused launch
// over the whole group (kernels/optim_adamw.cu) with the same scalars.
class AdamW final : public Optimizer {
 public:
  AdamW(const config::OptimizerConfig& entry, std::vector<ParamRef> params, const OptimizerContext& context)
      : lr_(entry.lr), wd_(entry.weight_decay), comm_(context.comm), params_(std::move(params)) {
    const auto& s = std::get<config::AdamWSettings>(entry.settings);
    beta1_ = s.betas[0], beta2_ = s.betas[1], eps_ = s.eps;
    if (group_device(params_, *comm_, "adamw") == Device::cuda) {
#if SPEEDRUN_HAVE_CUDA
      std::vector<Tensor> p, g;
      for (const ParamRef& r : params_) p.push_back(r.param), g.push_back(r.grad);
      device_ = std::make_unique<cuda::AdamWDevice>(p, g);
#endif
      return;
    }
    for (const ParamRef& p : params_) {
      offset_.push_back(total_);
      total_ += p.param.numel();
    }
    const int64_t world = comm_->world();
    shard_ = (total_ + world - 1) / world;
    lo_ = std::min(total_, comm_->rank() * shard_);
    hi_ = std::min(total_, lo_ + shard_);
    m_.assign(static_cast<size_t>(hi_ - lo_), 0.0f);
    v_.assign(m_.size(), 0.0f);
  }

  const char* type() const override { return "adamw"; }

  void step(int64_t step, double lr_factor) override {
    // torch's AdamW: its step count t starts at 1; scalars are computed in double and
    // the tensor math in the parameters' precision (fp32).
    const double lr = lr_ * lr_factor;
    const double t = static_cast<double>(step + 1);
    Scalars s;
    s.decay = static_cast<float>(1.0 - lr * wd_);
    s.b1 = static_cast<float>(beta1_), s.b2 = static_cast<float>(beta2_);
    s.step_size = static_cast<float>(lr / (1.0 - std::pow(beta1_, t)));
    s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2_, t)));
    s.eps = static_cast<float>(eps_);
#if SPEEDRUN_HAVE_CUDA
    if (device_) {
      device_->step({s.decay, s.b1, s.b2, s.step_size, s.bc2_sqrt, s.eps});
      return;
    }
#endif
    if (comm_->world() == 1) {
      for (size_t k = 0; k < params_.size(); ++k)
        update(s, params_[k].param.data<float>(), params_[k].grad.data<float>(), m_.data() + offset_[k],
               v_.data() + offset_[k], params_[k].param.numel());
      return;
    }
    const int64_t world = comm_->world();
    flat_.assign(static_cast<size_t>(world * shard_), 0.0f);
    for (size_t k = 0; k < params_.size(); ++k)
      std::memcpy(flat_.data() + offset_[k], params_[k].grad.ptr, params_[k].grad.bytes());
    shard_buf_.assign(static_cast<size_t>(shard_), 0.0f);
    comm_->reduce_scatter_sum(Tensor::of(flat_.data(), {world * shard_}), Tensor::of(shard_buf_.data(), {shard_}));
    // Update the parameters' pieces that fall in [lo_, hi_), then put the updated
    // shard in shard_buf_ for the gather (padding stays zero).
    for (size_t k = 0; k < params_.size(); ++k) {
      const int64_t a = std::max(lo_, offset_[k]), b = std::min(hi_, offset_[k] + params_[k].param.numel());
      if (a >= b) continue;
      float* p = params_[k].param.data<float>() + (a - offset_[k]);
      update(s, p, shard_buf_.data() + (a - lo_), m_.data() + (a - lo_), v_.data() + (a - lo_), b - a);
      std::memcpy(shard_buf_.data() + (a - lo_), p, static_cast<size_t>(b - a) * sizeof(float));
    }
    comm_->all_gather(Tensor::of(shard_buf_.data(), {shard_}), Tensor::of(flat_.data(), {world * shard_}));
    for (size_t k = 0; k < params_.size(); ++k)
      std::memcpy(params_[k].param.ptr, flat_.data() + offset_[k], params_[k].param.bytes());
  }

  size_t state_bytes() const override {
#if SPEEDRUN_HAVE_CUDA
    if (device_) return device_->state_bytes();
#endif
    return 2 * m_.size() * sizeof(float);
  }

 private:
  struct Scalars {
    float decay, b1, b2, step_size, bc2_sqrt, eps;
  };

  static void update(const Scalars& s, float* p, const float* g, float* m, float* v, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      p[i] *= s.decay;
      m[i] += (1.0f - s.b1) * (g[i] - m[i]);  // lerp(m, g, 1 - beta1), as torch >= 2.0
      v[i] = s.b2 * v[i] + (1.0f - s.b2) * g[i] * g[i];
      const float denom = std::sqrt(v[i]) / s.bc2_sqrt + s.eps;
      p[i] -= s.step_size * m[i] / denom;
    }
  }

  double lr_, wd_, beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8;
  dist::Communicator* comm_;
  std::vector<ParamRef> params_;
  std::vector<int64_t> offset_;  // of each parameter in the group's flat index space
  int64_t total_ = 0, shard_ = 0, lo_ = 0, hi_ = 0;
  std::vector<float> m_, v_;     // moments of elements [lo_, hi_)
  std::vector<float> flat_, shard_buf_;
#if SPEEDRUN_HAVE_CUDA
  std::unique_ptr<cuda::AdamWDevice> device_;  // set when the group lives on CUDA
#endif
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context) {
  return std::make_unique<AdamW>(entry, std::move(params), context);
}

}  // namespace speedrun::optim
