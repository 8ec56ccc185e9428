#include "optim/newton_muon.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <stdexcept>
#include <utility>

#include "core/buffer.h"
#include "core/error.h"
#include "optim/device_matrix_sharding.h"
#include "optim/device_path.h"
#include "kernels/ops/ops_cuda.h"
#include "core/log.h"
#include "optim/input_statistic.h"
#include "optim/matrix_sharding.h"
#include "optim/muon.h"
#include "optim/optimizer_state.h"

namespace speedrun::optim {

bool capture_point_of(const std::string& name, int64_t& layer, model::CapturePoint& point) {
  constexpr std::string_view prefix = "blocks.";
  if (name.rfind(prefix, 0) != 0) return false;
  const char* first = name.data() + prefix.size();
  const char* last = name.data() + name.size();
  const auto [end, ec] = std::from_chars(first, last, layer);
  if (ec != std::errc() || end == first || end == last || *end != '.') return false;
  const std::string_view rest(end + 1, static_cast<size_t>(last - end - 1));
  using model::CapturePoint;
  // Track 3's names, then record26's (qkv_w, or one of its matrices "qkv_w[j]" as the
  // optimizers see them: optim/registry.cpp).
  if (rest == "attn.q.weight" || rest == "attn.k.weight" || rest == "attn.v.weight") point = CapturePoint::attn_qkv;
  else if (rest == "attn.proj.weight") point = CapturePoint::attn_proj;
  else if (rest == "mlp.fc.weight") point = CapturePoint::mlp_fc;
  else if (rest == "mlp.proj.weight") point = CapturePoint::mlp_proj;
  else if (rest == "attn.qkv_w" || rest.starts_with("attn.qkv_w[")) point = CapturePoint::attn_qkv;
  else if (rest == "attn.c_proj.weight") point = CapturePoint::attn_proj;
  else if (rest == "mlp.c_fc.weight") point = CapturePoint::mlp_fc;
  else if (rest == "mlp.c_proj.weight") point = CapturePoint::mlp_proj;
  else return false;
  return true;
}

namespace {

// The config's names of the capture points ("attn_qkv", ...).
std::string setting_name(model::CapturePoint p) {
  switch (p) {
    case model::CapturePoint::attn_qkv: return "attn_qkv";
    case model::CapturePoint::attn_proj: return "attn_proj";
    case model::CapturePoint::mlp_fc: return "mlp_fc";
    case model::CapturePoint::mlp_proj: return "mlp_proj";
  }
  return "?";
}

class NewtonMuon final : public Optimizer, public model::LayerInputSink {
 public:
  NewtonMuon(const config::OptimizerConfig& entry, std::vector<ParamRef> params, const OptimizerContext& context)
      : lr_(entry.lr),
        wd_(entry.weight_decay),
        settings_(std::get<config::NewtonMuonSettings>(entry.settings)),
        update_(settings_),
        comm_(context.comm),
        params_(std::move(params)),
        sharding_(params_, context.comm) {
    const auto& s = settings_;
    const bool on_cuda = group_device(params_, "newton_muon") == Device::cuda;
    for (size_t k = 0; k < params_.size(); ++k) {
      const ParamRef& p = params_[k];
      // Momentum only for the matrices this rank updates; the statistics are kept
      // (and all-reduced) on every rank. (On CUDA the momentum lives in device_muon_.)
      buf_.emplace_back(sharding_.owns(k) && !on_cuda ? static_cast<size_t>(p.param.numel()) : 0, 0.0f);
      int64_t layer = 0;
      model::CapturePoint point{};
      if (!capture_point_of(p.name, layer, point))
        throw UserError("newton_muon: parameter " + p.name +
                        " has no captured layer input; Newton-Muon preconditions blocks.*.attn.{q,k,v,proj}.weight "
                        "and blocks.*.mlp.{fc,proj}.weight (give the others to another optimizer)");
      if (std::find(s.precondition.begin(), s.precondition.end(), setting_name(point)) == s.precondition.end()) {
        stat_of_.push_back(-1);  // plain Muon for this matrix
        continue;
      }
      const int64_t cols = p.param.size(1);
      const int64_t blocks = point == model::CapturePoint::mlp_proj ? s.mlp_proj_blocks : 1;
      if (cols % blocks != 0)
        throw UserError("newton_muon: mlp_proj_blocks = " + std::to_string(blocks) + " does not divide the " +
                        std::to_string(cols) + " input columns of " + p.name);
      const auto key = std::make_pair(layer, point);
      auto it = index_.find(key);
      if (it == index_.end()) {
        it = index_.emplace(key, shapes_.size()).first;
        shapes_.push_back({cols / blocks, blocks});
      } else if (shapes_[it->second].block_width * shapes_[it->second].blocks != cols) {
        throw std::logic_error("newton_muon: matrices sharing a capture point have different input widths");
      }
      stat_of_.push_back(static_cast<int64_t>(it->second));
    }
    if (on_cuda) {
      build_device();
      return;
    }
    for (const cuda::StatisticShape& shape : shapes_) stats_.emplace_back(shape.block_width, shape.blocks, s.initial_scale);
  }

  const char* type() const override { return "newton_muon"; }

  void overlap_reduction(dist::GradBucketer& bucketer) override {
    if (device_sharding_)
      device_sharding_->attach(bucketer);
    else
      sharding_.attach(bucketer);
  }

  bool refresh_step(int64_t step) const { return (step + 1) % settings_.refresh_every == 0; }

  model::LayerInputSink* capture_sink(int64_t step) override {
    return refresh_step(step) && !shapes_.empty() ? this : nullptr;
  }

  void capture(int64_t layer, model::CapturePoint point, const Tensor& input) override {
    auto it = index_.find({layer, point});
    if (it == index_.end()) return;
    if (device_stats_) {
      device_stats_->accumulate(it->second, input);
      return;
    }
    stats_[it->second].accumulate(input);
  }

  void step(int64_t step, double lr_factor) override {
    if (device_muon_) {
      device_step(step, lr_factor);
      return;
    }
    if (refresh_step(step) && !stats_.empty()) refresh(step);
    sharding_.step([&](size_t k, const float* g) {
      const Tensor& pt = params_[k].param;
      const int64_t rows = pt.size(0), cols = pt.size(1);
      if (stat_of_[k] >= 0 && stats_[static_cast<size_t>(stat_of_[k])].has_inverse()) {
        preconditioned_.resize(static_cast<size_t>(rows * cols));
        stats_[static_cast<size_t>(stat_of_[k])].precondition(g, preconditioned_.data(), rows);
        g = preconditioned_.data();
      }
      update_.apply(pt.data<float>(), g, buf_[k].data(), rows, cols, step, lr_ * lr_factor, wd_);
    });
  }

  size_t communication_bytes() const override {
    return device_sharding_ ? device_sharding_->buffer_bytes() : sharding_.buffer_bytes();
  }

  size_t state_bytes() const override {
    if (device_muon_) return device_muon_->state_bytes() + (device_stats_ ? device_stats_->state_bytes() : 0);
    size_t n = 0;
    for (const auto& b : buf_) n += b.size() * sizeof(float);
    for (const auto& s : stats_) n += static_cast<size_t>(3 * s.blocks() * s.block_width() * s.block_width()) * 4;
    return n;
  }

  // Momentum as Muon's; per statistic "blocks.<layer>.<point>.covariance" (the EMA C) and
  // ".inverse" (P), (blocks, n, n), the same on every rank; the counters "refreshes" and
  // "cholesky_failures". The accumulators are zero between steps (a refresh step
  // captures and refreshes within the step), so they are not state.
  std::vector<StateTensor> export_state() override {
    std::vector<StateTensor> out = export_momentum(params_, sharding_, *comm_, buf_,
                                                   device_muon_ ? device_muon_->momentum() : std::vector<Tensor>{});
    for (const auto& [key, i] : index_) {
      const cuda::StatisticShape& sh = shapes_[i];
      const int64_t n = sh.blocks * sh.block_width * sh.block_width;
      const std::string name = statistic_name(key);
      const std::vector<int64_t> shape{sh.blocks, sh.block_width, sh.block_width};
      if (device_stats_) {
        out.push_back(f32_state(name + ".covariance", shape,
                                to_host(device_stats_->covariance(i).data<float>(), n, Device::cuda)));
        out.push_back(f32_state(name + ".inverse", shape, to_host(device_stats_->inverse(i).data<float>(), n, Device::cuda)));
      } else {
        if (stats_[i].count() != 0.0) throw std::logic_error("newton_muon: state exported in the middle of a step");
        out.push_back(f32_state(name + ".covariance", shape, to_host(stats_[i].covariances(), n, Device::cpu)));
        out.push_back(f32_state(name + ".inverse", shape, to_host(stats_[i].inverses(), n, Device::cpu)));
      }
    }
    out.push_back(i64_state("refreshes", refreshes_));
    out.push_back(i64_state("cholesky_failures", device_stats_ ? device_stats_->failures() : failures_));
    return out;
  }

  void import_state(const StateSource& source) override {
    import_momentum(source, params_, sharding_, buf_, device_muon_ ? device_muon_->momentum() : std::vector<Tensor>{});
    std::vector<float> values;
    for (const auto& [key, i] : index_) {
      const cuda::StatisticShape& sh = shapes_[i];
      const int64_t n = sh.blocks * sh.block_width * sh.block_width;
      const std::string name = statistic_name(key);
      const std::vector<int64_t> shape{sh.blocks, sh.block_width, sh.block_width};
      values.resize(static_cast<size_t>(n));
      for (const char* what : {".covariance", ".inverse"}) {
        source.read_f32(name + what, shape, values.data());
        const bool cov = std::string(what) == ".covariance";
        if (device_stats_)
          from_host((cov ? device_stats_->covariance(i) : device_stats_->inverse(i)).data<float>(), values.data(), n,
                    Device::cuda);
        else
          from_host(cov ? stats_[i].covariances() : stats_[i].inverses(), values.data(), n, Device::cpu);
      }
    }
    refreshes_ = source.read_i64("refreshes");
    failures_ = source.read_i64("cholesky_failures");
    if (refreshes_ < 0 || failures_ < 0) throw UserError("newton_muon: negative counters in the optimizer state");
    for (InputStatistic& s : stats_) s.set_has_inverse(refreshes_ > 0);
    if (device_stats_) {
      device_stats_->set_failures(failures_);
      device_has_inverse_ = refreshes_ > 0;
      failures_read_at_ = refreshes_;
    }
  }

  std::vector<size_t> weight_copies_written() const override {
    if (!device_sharding_) return {};
    return copies_written(params_, [this](size_t k) { return device_sharding_->owns(k); });
  }

  nlohmann::json metrics() const override {
    if (shapes_.empty()) return nullptr;
    // The failures are counted on the device; they change only on refreshes, so the
    // counter is read (one synchronizing copy) at most once per refresh.
    if (device_stats_ && failures_read_at_ != refreshes_) {
      const int64_t failed = device_stats_->failures();
      if (failed > 0 && failures_ == 0)
        spdlog::warn("newton_muon: the Cholesky factorization of {} input statistic block(s) failed by refresh {}; "
                     "those matrices use the identity until the next refresh (counted in metrics as "
                     "cholesky_failures; logged once)",
                     failed, refreshes_);
      failures_ = failed;
      failures_read_at_ = refreshes_;
    }
    return {{"refreshes", refreshes_}, {"cholesky_failures", failures_}};
  }

 private:
  void refresh(int64_t step) {
    int64_t failed = 0;
    for (InputStatistic& s : stats_) {
      comm_->all_reduce_sum(s.accumulators());
      failed += s.refresh(settings_.ema_beta, settings_.ridge, settings_.ridge_eps);
    }
    ++refreshes_;
    if (failed > 0 && failures_ == 0)
      spdlog::warn("newton_muon: the Cholesky factorization of {} input statistic(s) failed at step {}; those "
                   "matrices use the identity until the next refresh (counted in metrics as cholesky_failures; "
                   "logged once)",
                   failed, step + 1);
    failures_ += failed;
  }

  static std::string statistic_name(const std::pair<int64_t, model::CapturePoint>& key) {
    return "blocks." + std::to_string(key.first) + "." + setting_name(key.second);
  }

  // The device path: statistics (kept and all-reduced on every rank, as on the CPU),
  // preconditioned gradients and Muon on CUDA for the matrices this rank owns.
  void build_device() {
    device_sharding_ = std::make_unique<DeviceMatrixSharding>(params_, comm_);
    std::vector<cuda::PreconditionJob> jobs;
    int64_t total = 0;
    for (size_t k = 0; k < params_.size(); ++k)
      if (stat_of_[k] >= 0 && device_sharding_->owns(k)) total += params_[k].param.numel();
    preconditioned_dev_ = Buffer(Device::cuda, static_cast<size_t>(std::max<int64_t>(total, 1)) * sizeof(float));
    if (cuda::poison_scratch()) cuda::fill_nan(DType::f32, preconditioned_dev_.data(), std::max<int64_t>(total, 1));
    std::vector<cuda::DeviceMatrix> mats;
    int64_t offset = 0;
    for (size_t k = 0; k < params_.size(); ++k) {
      if (!device_sharding_->owns(k)) continue;
      const Tensor& pt = params_[k].param;
      const float* grad = device_sharding_->grad(k);
      if (stat_of_[k] >= 0) {
        float* out = preconditioned_dev_.as<float>() + offset;
        offset += pt.numel();
        jobs.push_back({grad, out, pt.size(0), static_cast<size_t>(stat_of_[k])});
        grad = out;  // Muon reads the preconditioned gradient
      }
      mats.push_back({pt.data<float>(), grad, pt.size(0), pt.size(1), copy_pointer(params_[k])});
    }
    jobs_ = jobs;
    device_stats_ = std::make_unique<cuda::NewtonMuonStatsDevice>(shapes_, jobs, settings_.initial_scale);
    device_muon_ = std::make_unique<cuda::MuonDevice>(mats, device_newton_schulz(settings_), settings_.nesterov);
  }

  void device_step(int64_t step, double lr_factor) {
    if (refresh_step(step) && !shapes_.empty()) {
      if (comm_->world() > 1)
        for (const Tensor& t : device_stats_->accumulators()) comm_->all_reduce_sum(t);
      device_stats_->refresh(settings_.ema_beta, settings_.ridge, settings_.ridge_eps);
      ++refreshes_;
      device_has_inverse_ = true;
    }
    device_sharding_->reduce();
    if (device_has_inverse_) {
      device_stats_->precondition();
    } else {  // P = I before the first refresh: Muon sees the raw gradient
      for (const cuda::PreconditionJob& j : jobs_)
        cuda::copy_device_async(j.out, j.grad, j.rows * shapes_[j.stat].block_width * shapes_[j.stat].blocks);
    }
    device_muon_->step(static_cast<float>(muon_momentum(settings_, step)), lr_ * lr_factor, wd_);
    device_sharding_->gather();
  }

  std::unique_ptr<DeviceMatrixSharding> device_sharding_;
  std::unique_ptr<cuda::NewtonMuonStatsDevice> device_stats_;
  std::unique_ptr<cuda::MuonDevice> device_muon_;
  std::vector<cuda::PreconditionJob> jobs_;
  Buffer preconditioned_dev_;
  bool device_has_inverse_ = false;
  mutable int64_t failures_read_at_ = 0;

  double lr_, wd_;
  config::NewtonMuonSettings settings_;
  MuonMatrixUpdate update_;
  dist::Communicator* comm_;
  std::vector<ParamRef> params_;
  MatrixSharding sharding_;
  std::vector<std::vector<float>> buf_;
  std::vector<int64_t> stat_of_;  // per parameter: index into stats_, or -1
  std::vector<cuda::StatisticShape> shapes_;  // per statistic, both paths
  std::vector<InputStatistic> stats_;         // the CPU path's statistics
  std::map<std::pair<int64_t, model::CapturePoint>, size_t> index_;
  std::vector<float> preconditioned_;
  int64_t refreshes_ = 0;
  mutable int64_t failures_ = 0;  // on CUDA, refreshed from the device by metrics()
};

}  // namespace

std::unique_ptr<Optimizer> make_newton_muon(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                            const OptimizerContext& context) {
  return std::make_unique<NewtonMuon>(entry, std::move(params), context);
}

}  // namespace speedrun::optim
