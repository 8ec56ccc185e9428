#include "optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "core/buffer.h"
#include "optim/device_path.h"
#include "optim/optimizer_state.h"
#include "kernels/optim/optim_cuda.h"

namespace speedrun::optim {

namespace {

// AdamW with ZeRO-1 sharding across ranks. The group's parameters are split into
// buckets; each bucket's parameters, concatenated, form one flat index space padded to R
// equal shards, and rank r keeps the moments of shard r of every bucket. A step
// reduce-scatters each bucket's local gradients (rank r receives its shard summed over
// ranks), updates its shards of the parameters and all-gathers them. Without overlap
// (grad_bucket_bytes 0) there is one bucket, the whole group in group order; with it the
// buckets follow the backward's order (the reverse of the group's, as PyTorch DDP's first
// buckets) so that each reduce-scatter can start during the backward (dist/grad_buckets.h).
// AdamW is element-wise, so the split changes which rank updates an element, never its
// arithmetic. With one process the shard is everything and the gradients are read in
// place: no copies, the same arithmetic as unsharded AdamW.
// On CUDA the moments live on the device and the update is one fused launch over the
// group's (or the shards') elements (kernels/optim/adamw.cu) with the same scalars.
class AdamW final : public Optimizer {
 public:
  AdamW(const config::OptimizerConfig& entry, std::vector<ParamRef> params, const OptimizerContext& context)
      : lr_(entry.lr), wd_(entry.weight_decay), comm_(context.comm), params_(std::move(params)) {
    const auto& s = std::get<config::AdamWSettings>(entry.settings);
    beta1_ = s.betas[0], beta2_ = s.betas[1], eps_ = s.eps;
    eps_on_v_ = s.eps_placement == "v";
    const bool on_cuda = group_device(params_, "adamw") == Device::cuda;
    int64_t state = 0;
    if (comm_->world() == 1) {
      for (const ParamRef& p : params_) {
        offset_.push_back(state);
        state += p.param.numel();
      }
    } else {
      state = build_buckets(context.grad_bucket_bytes, on_cuda);
    }
    state_elems_ = state;
    if (on_cuda) {
      build_device();
      return;
    }
    m_.assign(static_cast<size_t>(state), 0.0f);
    v_.assign(m_.size(), 0.0f);
  }

  const char* type() const override { return "adamw"; }

  // One process only: with several, the kernel updates this rank's shard pieces and the
  // parameters are then all-gathered, so the model converts their copies itself.
  std::vector<size_t> weight_copies_written() const override {
    if (!device_ || comm_->world() != 1) return {};
    return copies_written(params_, [](size_t) { return true; });
  }

  void overlap_reduction(dist::GradBucketer& bucketer) override {
    bucketer_ = &bucketer;
    for (Bucket& b : buckets_) {
      std::vector<size_t> indices;
      for (size_t k : b.params) indices.push_back(params_[k].index);
      b.id = bucketer.add(std::move(indices), [this, &b] { return start_reduction(b); });
    }
  }

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
    // eps_placement "v" (DistAdam): m / (sqrt(v) + eps) * sqrt(bc2) equals
    // m / (sqrt(v)/sqrt(bc2) + eps/sqrt(bc2)): the torch form with eps / sqrt(bc2), so the
    // CPU loop and the CUDA kernel serve both with the same scalars.
    s.eps = static_cast<float>(eps_on_v_ ? eps_ / std::sqrt(1.0 - std::pow(beta2_, t)) : eps_);
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
    // Overlapped: each bucket's all-gather runs while the next buckets update; all are
    // waited for at the end. Otherwise each is blocking, as before the overlap existed.
    std::vector<std::unique_ptr<dist::Request>> gathers;
    for (Bucket& b : buckets_) {
      reduced(b);
      // Update the parameters' pieces that fall in [lo, hi), then put the updated piece
      // in the piece buffer for the gather (padding stays zero).
      for (size_t j = 0; j < b.params.size(); ++j) {
        const ParamRef& pr = params_[b.params[j]];
        const int64_t a = std::max(b.lo, b.offset[j]), e = std::min(b.hi, b.offset[j] + pr.param.numel());
        if (a >= e) continue;
        float* p = pr.param.data<float>() + (a - b.offset[j]);
        const int64_t at = a - b.lo;
        update(s, p, b.piece.data() + at, m_.data() + b.state + at, v_.data() + b.state + at, e - a);
        std::memcpy(b.piece.data() + at, p, static_cast<size_t>(e - a) * sizeof(float));
      }
      const Tensor piece = Tensor::of(b.piece.data(), {b.shard}), flat = Tensor::of(b.flat.data(), {world * b.shard});
      if (bucketer_ != nullptr) {
        gathers.push_back(comm_->start_all_gather(piece, flat));
        continue;
      }
      comm_->all_gather(piece, flat);
      unpack(b);
    }
    for (size_t i = 0; i < gathers.size(); ++i) {
      gathers[i]->wait();
      unpack(buckets_[i]);
    }
  }


  size_t state_bytes() const override {
    if (device_) return device_->state_bytes();
    return 2 * m_.size() * sizeof(float);
  }

  size_t communication_bytes() const override {
    size_t b = 0;
    for (const Bucket& k : buckets_)
      b += (k.flat.capacity() + k.piece.capacity()) * sizeof(float) + k.flat_dev.bytes() + k.piece_dev.bytes();
    return b;
  }

  // "<param>.exp_avg" and "<param>.exp_avg_sq" (torch's names) per parameter, whole: each
  // bucket's shards are all-gathered (padding dropped), so the state does not depend on
  // the number of ranks or the bucket size.
  std::vector<StateTensor> export_state() override {
    const Device device = device_ ? Device::cuda : Device::cpu;
    const std::vector<float> m = device_ ? to_host(device_->first_moment().data<float>(), state_elems_, device) : m_;
    const std::vector<float> v = device_ ? to_host(device_->second_moment().data<float>(), state_elems_, device) : v_;
    // Each parameter's moments in parameter order.
    std::vector<std::vector<float>> pm(params_.size()), pv(params_.size());
    if (comm_->world() == 1) {
      for (size_t k = 0; k < params_.size(); ++k) {
        const auto at = static_cast<std::ptrdiff_t>(offset_[k]), n = static_cast<std::ptrdiff_t>(params_[k].param.numel());
        pm[k].assign(m.begin() + at, m.begin() + at + n);
        pv[k].assign(v.begin() + at, v.begin() + at + n);
      }
    } else {
      const int64_t world = comm_->world();
      for (const Bucket& b : buckets_)
        for (auto [x, out] : {std::pair{&m, &pm}, std::pair{&v, &pv}}) {
          // Rank r's piece is [r * shard, ...) of the bucket's flat space: the gathered
          // buffer holds element i of the flat space at i.
          std::vector<float> send(static_cast<size_t>(b.shard), 0.0f), all(static_cast<size_t>(world * b.shard));
          std::copy(x->begin() + b.state, x->begin() + b.state + (b.hi - b.lo), send.begin());
          comm_->all_gather(Tensor::of(send.data(), {b.shard}), Tensor::of(all.data(), {world * b.shard}));
          for (size_t j = 0; j < b.params.size(); ++j) {
            const auto at = static_cast<std::ptrdiff_t>(b.offset[j]);
            (*out)[b.params[j]].assign(all.begin() + at, all.begin() + at + params_[b.params[j]].param.numel());
          }
        }
    }
    std::vector<StateTensor> out;
    for (size_t k = 0; k < params_.size(); ++k) {
      out.push_back(f32_state(params_[k].name + ".exp_avg", shape_of(params_[k].param), std::move(pm[k])));
      out.push_back(f32_state(params_[k].name + ".exp_avg_sq", shape_of(params_[k].param), std::move(pv[k])));
    }
    return out;
  }

  // Each rank takes the pieces of the whole moments that it keeps (its shard of every
  // bucket), so the source may come from any number of ranks.
  void import_state(const StateSource& source) override {
    std::vector<float> m(static_cast<size_t>(state_elems_)), v(m.size()), whole;
    for (size_t k = 0; k < params_.size(); ++k) {
      const int64_t n = params_[k].param.numel();
      whole.resize(static_cast<size_t>(n));
      for (auto [name, dst] : {std::pair{".exp_avg", &m}, std::pair{".exp_avg_sq", &v}}) {
        source.read_f32(params_[k].name + name, shape_of(params_[k].param), whole.data());
        if (comm_->world() == 1) {
          std::copy(whole.begin(), whole.end(), dst->begin() + offset_[k]);
          continue;
        }
        for (const Bucket& b : buckets_)
          for (size_t j = 0; j < b.params.size(); ++j) {
            if (b.params[j] != k) continue;
            const int64_t a = std::max(b.lo, b.offset[j]), e = std::min(b.hi, b.offset[j] + n);
            if (a < e)
              std::copy(whole.begin() + (a - b.offset[j]), whole.begin() + (e - b.offset[j]),
                        dst->begin() + b.state + (a - b.lo));
          }
      }
    }
    if (device_) {
      from_host(device_->first_moment().data<float>(), m.data(), state_elems_, Device::cuda);
      from_host(device_->second_moment().data<float>(), v.data(), state_elems_, Device::cuda);
      return;
    }
    m_ = std::move(m);
    v_ = std::move(v);
  }

 private:
  struct Scalars {
    float decay, b1, b2, step_size, bc2_sqrt, eps;
  };

  // One reduce-scatter's worth of the group (several processes only).
  struct Bucket {
    std::vector<size_t> params;   // indices into params_, in the bucket's flat order
    std::vector<int64_t> offset;  // of each in the bucket's flat index space
    int64_t shard = 0;            // elements per rank (the flat space is world * shard, zero-padded)
    int64_t lo = 0, hi = 0;       // this rank's piece [lo, hi) of the unpadded elements
    int64_t state = 0;            // where the piece's moments start in the state buffers
    std::vector<float> flat, piece;  // host: world * shard, shard
    Buffer flat_dev, piece_dev;      // device: the same
    size_t id = 0;                   // its collective in bucketer_
  };

  // Splits the group into buckets; returns the elements of moments this rank keeps.
  int64_t build_buckets(size_t bucket_bytes, bool on_cuda) {
    std::vector<size_t> order(params_.size());  // group order, or the backward's (reverse)
    for (size_t k = 0; k < order.size(); ++k) order[k] = bucket_bytes == 0 ? k : order.size() - 1 - k;
    std::vector<size_t> bytes;
    for (size_t k : order) bytes.push_back(params_[k].grad.bytes());
    const int64_t world = comm_->world();
    int64_t state = 0;
    for (const std::vector<size_t>& positions : dist::assign_buckets(bytes, bucket_bytes)) {
      Bucket b;
      int64_t total = 0;
      for (size_t i : positions) {
        b.params.push_back(order[i]);
        b.offset.push_back(total);
        total += params_[order[i]].param.numel();
      }
      b.shard = std::max<int64_t>((total + world - 1) / world, 1);
      b.lo = std::min(total, comm_->rank() * b.shard);
      b.hi = std::min(total, b.lo + b.shard);
      b.state = state;
      state += b.hi - b.lo;
      const size_t flat_bytes = static_cast<size_t>(world * b.shard) * sizeof(float);
      if (on_cuda) {
        b.flat_dev = Buffer(Device::cuda, flat_bytes);
        b.piece_dev = Buffer(Device::cuda, static_cast<size_t>(b.shard) * sizeof(float));
        cuda::zero_device_async(b.flat_dev.as<float>(), world * b.shard);
        cuda::zero_device_async(b.piece_dev.as<float>(), b.shard);
      } else {
        b.flat.assign(static_cast<size_t>(world * b.shard), 0.0f);
        b.piece.assign(static_cast<size_t>(b.shard), 0.0f);
      }
      buckets_.push_back(std::move(b));
    }
    return state;
  }

  // Packs the bucket's local gradients into its flat buffer (the padding after the last
  // parameter zero); returns the reduce-scatter's send and receive buffers.
  std::pair<Tensor, Tensor> pack(Bucket& b) {
    const int64_t world = comm_->world();
    const int64_t used = b.offset.back() + params_[b.params.back()].param.numel();
    if (device_) {
      float* flat = b.flat_dev.as<float>();
      cuda::zero_device_async(flat + used, world * b.shard - used);
      for (size_t j = 0; j < b.params.size(); ++j)
        cuda::copy_device_async(flat + b.offset[j], params_[b.params[j]].grad.data<float>(),
                                params_[b.params[j]].param.numel());
      return {Tensor::of(flat, {world * b.shard}, Device::cuda),
              Tensor::of(b.piece_dev.as<float>(), {b.shard}, Device::cuda)};
    }
    std::fill(b.flat.begin() + used, b.flat.end(), 0.0f);
    for (size_t j = 0; j < b.params.size(); ++j)
      std::memcpy(b.flat.data() + b.offset[j], params_[b.params[j]].grad.ptr, params_[b.params[j]].grad.bytes());
    return {Tensor::of(b.flat.data(), {world * b.shard}), Tensor::of(b.piece.data(), {b.shard})};
  }

  std::unique_ptr<dist::Request> start_reduction(Bucket& b) {
    const auto [send, recv] = pack(b);
    return comm_->start_reduce_scatter_sum(send, recv);
  }

  // The bucket's summed gradient shard is in its piece buffer when this returns: waited
  // for in the bucketer, or reduced now by the blocking collective (no overlap).
  void reduced(Bucket& b) {
    if (bucketer_ != nullptr) {
      bucketer_->wait(b.id);
      return;
    }
    const auto [send, recv] = pack(b);
    comm_->reduce_scatter_sum(send, recv);
  }

  // Copies the gathered flat buffer back into the bucket's parameters (host).
  void unpack(const Bucket& b) {
    for (size_t j = 0; j < b.params.size(); ++j) {
      const ParamRef& pr = params_[b.params[j]];
      std::memcpy(pr.param.ptr, b.flat.data() + b.offset[j], pr.param.bytes());
    }
  }

  // The device path: the same buckets and shards, with device buffers. One process: the
  // kernel reads the gradients in place. Several: each bucket's gradients are copied
  // (device to device) into its flat buffer and reduce-scattered into its piece buffer,
  // one kernel launch updates every piece of the parameters, which are copied into the
  // piece buffers, all-gathered and copied back into every parameter.
  void build_device() {
    std::vector<cuda::AdamWSegment> segments;
    if (comm_->world() == 1) {
      // One process: the kernel also writes each parameter's bf16 weight copy, if lent.
      for (const ParamRef& p : params_)
        segments.push_back({p.param.data<float>(), p.grad.data<float>(), p.param.numel(), copy_pointer(p)});
    } else {
      for (Bucket& b : buckets_)
        for (size_t j = 0; j < b.params.size(); ++j) {
          const ParamRef& pr = params_[b.params[j]];
          const int64_t a = std::max(b.lo, b.offset[j]), e = std::min(b.hi, b.offset[j] + pr.param.numel());
          if (a < e)
            segments.push_back({pr.param.data<float>() + (a - b.offset[j]), b.piece_dev.as<float>() + (a - b.lo), e - a});
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
    for (Bucket& b : buckets_) reduced(b);
    device_->step(s);
    std::vector<std::unique_ptr<dist::Request>> gathers;  // overlapped: all started, then waited
    for (Bucket& b : buckets_) {
      float* flat = b.flat_dev.as<float>();
      float* piece = b.piece_dev.as<float>();
      for (size_t j = 0; j < b.params.size(); ++j) {
        const ParamRef& pr = params_[b.params[j]];
        const int64_t a = std::max(b.lo, b.offset[j]), e = std::min(b.hi, b.offset[j] + pr.param.numel());
        if (a < e) cuda::copy_device_async(piece + (a - b.lo), pr.param.data<float>() + (a - b.offset[j]), e - a);
      }
      const Tensor piece_t = Tensor::of(piece, {b.shard}, Device::cuda);
      const Tensor flat_t = Tensor::of(flat, {world * b.shard}, Device::cuda);
      if (bucketer_ != nullptr) {
        gathers.push_back(comm_->start_all_gather(piece_t, flat_t));
        continue;
      }
      comm_->all_gather(piece_t, flat_t);
      unpack_device(b);
    }
    for (size_t i = 0; i < gathers.size(); ++i) {
      gathers[i]->wait();  // the compute stream waits; the copies follow it
      unpack_device(buckets_[i]);
    }
  }

  void unpack_device(Bucket& b) {
    float* flat = b.flat_dev.as<float>();
    for (size_t j = 0; j < b.params.size(); ++j) {
      const ParamRef& pr = params_[b.params[j]];
      cuda::copy_device_async(pr.param.data<float>(), flat + b.offset[j], pr.param.numel());
    }
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
  bool eps_on_v_ = false;  // eps_placement "v" (record #26's DistAdam)
  dist::Communicator* comm_;
  std::vector<ParamRef> params_;
  std::vector<int64_t> offset_;  // one process: of each parameter in the state buffers
  std::vector<Bucket> buckets_;  // several processes
  std::vector<float> m_, v_;     // moments of this rank's elements
  int64_t state_elems_ = 0;     // moments kept by this rank (the elements of m_ and v_, or on the device)
  std::unique_ptr<cuda::AdamWDevice> device_;  // set when the group lives on CUDA
  dist::GradBucketer* bucketer_ = nullptr;     // set by overlap_reduction
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context) {
  return std::make_unique<AdamW>(entry, std::move(params), context);
}

}  // namespace speedrun::optim
