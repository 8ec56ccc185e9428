#include "optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/buffer.h"
#include "optim/device_path.h"
#include "optim/optimizer_state.h"
#include "kernels/optim/optim_cuda.h"

namespace speedrun::optim {

namespace {

// AdamW with ZeRO-1 sharding across ranks. The group's parameters, concatenated in
// group order, form one flat index space of `total` elements, padded to R equal
// shards; rank r keeps the moments of shard r only. A step reduce-scatters the local
// gradients (rank r receives shard r summed over ranks), updates its shard of the
// parameters and all-gathers them. With one process the shard is everything and the
// gradients are read in place: no copies, the same arithmetic as unsharded AdamW.
// On CUDA the moments live on the device and the update is one fused launch over the
// group's (or the shard's) elements (kernels/optim/adamw.cu) with the same scalars.
class AdamW final : public Optimizer {
 public:
  AdamW(const config::OptimizerConfig& entry, std::vector<ParamRef> params, const OptimizerContext& context)
      : lr_(entry.lr), wd_(entry.weight_decay), comm_(context.comm), params_(std::move(params)) {
    const auto& s = std::get<config::AdamWSettings>(entry.settings);
    beta1_ = s.betas[0], beta2_ = s.betas[1], eps_ = s.eps;
    const bool on_cuda = group_device(params_, "adamw") == Device::cuda;
    for (const ParamRef& p : params_) {
      offset_.push_back(total_);
      total_ += p.param.numel();
    }
    const int64_t world = comm_->world();
    shard_ = (total_ + world - 1) / world;
    lo_ = std::min(total_, comm_->rank() * shard_);
    hi_ = std::min(total_, lo_ + shard_);
    if (on_cuda) {
      build_device();
      return;
    }
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
    if (device_) {
      device_step({s.decay, s.b1, s.b2, s.step_size, s.bc2_sqrt, s.eps});
      return;
    }
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
    if (device_) return device_->state_bytes();
    return 2 * m_.size() * sizeof(float);
  }

  // "<param>.exp_avg" and "<param>.exp_avg_sq" (torch's names) per parameter, whole: the
  // ranks' shards are all-gathered (padding dropped), so the state does not depend on the
  // number of ranks.
  std::vector<StateTensor> export_state() override {
    const int64_t mine = hi_ - lo_;
    const Device device = device_ ? Device::cuda : Device::cpu;
    std::vector<float> m = device_ ? to_host(device_->first_moment().data<float>(), mine, device) : m_;
    std::vector<float> v = device_ ? to_host(device_->second_moment().data<float>(), mine, device) : v_;
    if (comm_->world() > 1) {
      const int64_t world = comm_->world();
      for (std::vector<float>* x : {&m, &v}) {
        std::vector<float> send(static_cast<size_t>(shard_), 0.0f), all(static_cast<size_t>(world * shard_));
        std::copy(x->begin(), x->end(), send.begin());
        comm_->all_gather(Tensor::of(send.data(), {shard_}), Tensor::of(all.data(), {world * shard_}));
        all.resize(static_cast<size_t>(total_));
        *x = std::move(all);
      }
    }
    std::vector<StateTensor> out;
    for (size_t k = 0; k < params_.size(); ++k) {
      const auto a = m.begin() + offset_[k], b = a + params_[k].param.numel();
      const auto c = v.begin() + offset_[k], d = c + params_[k].param.numel();
      out.push_back(f32_state(params_[k].name + ".exp_avg", shape_of(params_[k].param), {a, b}));
      out.push_back(f32_state(params_[k].name + ".exp_avg_sq", shape_of(params_[k].param), {c, d}));
    }
    return out;
  }

  void import_state(const StateSource& source) override {
    std::vector<float> m(static_cast<size_t>(hi_ - lo_)), v(m.size()), whole;
    for (size_t k = 0; k < params_.size(); ++k) {
      const int64_t n = params_[k].param.numel();
      const int64_t a = std::max(lo_, offset_[k]), b = std::min(hi_, offset_[k] + n);
      whole.resize(static_cast<size_t>(n));
      for (auto [name, dst] : {std::pair{".exp_avg", &m}, std::pair{".exp_avg_sq", &v}}) {
        source.read_f32(params_[k].name + name, shape_of(params_[k].param), whole.data());
        if (a < b) std::copy(whole.begin() + (a - offset_[k]), whole.begin() + (b - offset_[k]), dst->begin() + (a - lo_));
      }
    }
    if (device_) {
      from_host(device_->first_moment().data<float>(), m.data(), hi_ - lo_, Device::cuda);
      from_host(device_->second_moment().data<float>(), v.data(), hi_ - lo_, Device::cuda);
      return;
    }
    m_ = std::move(m);
    v_ = std::move(v);
  }

 private:
  struct Scalars {
    float decay, b1, b2, step_size, bc2_sqrt, eps;
  };

  // The device path: the same flat index space and shards, with device buffers. One
  // process: the kernel reads the gradients in place. Several: the gradients are copied
  // (device to device) into the flat buffer, reduce-scattered into this rank's shard, the
  // kernel updates the shard's parameter pieces, which are copied into the shard buffer,
  // all-gathered and copied back into every parameter.
  void build_device() {
    std::vector<cuda::AdamWSegment> segments;
    if (comm_->world() == 1) {
      for (const ParamRef& p : params_) segments.push_back({p.param.data<float>(), p.grad.data<float>(), p.param.numel()});
    } else {
      flat_dev_ = Buffer(Device::cuda, static_cast<size_t>(comm_->world() * shard_) * sizeof(float));
      shard_dev_ = Buffer(Device::cuda, static_cast<size_t>(std::max<int64_t>(shard_, 1)) * sizeof(float));
      for (size_t k = 0; k < params_.size(); ++k) {
        const int64_t a = std::max(lo_, offset_[k]), b = std::min(hi_, offset_[k] + params_[k].param.numel());
        if (a < b)
          segments.push_back({params_[k].param.data<float>() + (a - offset_[k]), shard_dev_.as<float>() + (a - lo_), b - a});
      }
    }
    device_ = std::make_unique<cuda::AdamWDevice>(segments);
  }

  void device_step(const cuda::AdamWScalars& s) {
    if (comm_->world() == 1) {
      device_->step(s);
      return;
    }
    const int64_t world = comm_->world();
    float* flat = flat_dev_.as<float>();
    float* shard = shard_dev_.as<float>();
    cuda::zero_device_async(flat, world * shard_);  // the padding after the last parameter stays zero
    for (size_t k = 0; k < params_.size(); ++k)
      cuda::copy_device_async(flat + offset_[k], params_[k].grad.data<float>(), params_[k].param.numel());
    comm_->reduce_scatter_sum(Tensor::of(flat, {world * shard_}, Device::cuda), Tensor::of(shard, {shard_}, Device::cuda));
    device_->step(s);
    for (size_t k = 0; k < params_.size(); ++k) {
      const int64_t a = std::max(lo_, offset_[k]), b = std::min(hi_, offset_[k] + params_[k].param.numel());
      if (a < b) cuda::copy_device_async(shard + (a - lo_), params_[k].param.data<float>() + (a - offset_[k]), b - a);
    }
    comm_->all_gather(Tensor::of(shard, {shard_}, Device::cuda), Tensor::of(flat, {world * shard_}, Device::cuda));
    for (size_t k = 0; k < params_.size(); ++k)
      cuda::copy_device_async(params_[k].param.data<float>(), flat + offset_[k], params_[k].param.numel());
  }

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
  std::unique_ptr<cuda::AdamWDevice> device_;  // set when the group lives on CUDA
  Buffer flat_dev_, shard_dev_;                 // several processes only
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context) {
  return std::make_unique<AdamW>(entry, std::move(params), context);
}

}  // namespace speedrun::optim
