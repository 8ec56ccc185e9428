#include "optim/newton_muon.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <stdexcept>
#include <utility>

#include "core/error.h"
#include "core/log.h"
#include "optim/input_statistic.h"
#include "optim/matrix_sharding.h"
#include "optim/muon.h"

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
  if (rest == "attn.q.weight" || rest == "attn.k.weight" || rest == "attn.v.weight") point = CapturePoint::attn_qkv;
  else if (rest == "attn.proj.weight") point = CapturePoint::attn_proj;
  else if (rest == "mlp.fc.weight") point = CapturePoint::mlp_fc;
  else if (rest == "mlp.proj.weight") point = CapturePoint::mlp_proj;
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
    for (size_t k = 0; k < params_.size(); ++k) {
      const ParamRef& p = params_[k];
      if (p.param.device != Device::cpu) throw std::logic_error("newton_muon: the CUDA optimizer is not built yet");
      // Momentum only for the matrices this rank updates; the statistics are kept
      // (and all-reduced) on every rank.
      buf_.emplace_back(sharding_.owns(k) ? static_cast<size_t>(p.param.numel()) : 0, 0.0f);
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
        it = index_.emplace(key, stats_.size()).first;
        stats_.emplace_back(cols / blocks, blocks, s.initial_scale);
      } else if (stats_[it->second].width() != cols) {
        throw std::logic_error("newton_muon: matrices sharing a capture point have different input widths");
      }
      stat_of_.push_back(static_cast<int64_t>(it->second));
    }
  }

  const char* type() const override { return "newton_muon"; }

  bool refresh_step(int64_t step) const { return (step + 1) % settings_.refresh_every == 0; }

  model::LayerInputSink* capture_sink(int64_t step) override {
    return refresh_step(step) && !stats_.empty() ? this : nullptr;
  }

  void capture(int64_t layer, model::CapturePoint point, const Tensor& input) override {
    if (auto it = index_.find({layer, point}); it != index_.end()) stats_[it->second].accumulate(input);
  }

  void step(int64_t step, double lr_factor) override {
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

  size_t state_bytes() const override {
    size_t n = 0;
    for (const auto& b : buf_) n += b.size() * sizeof(float);
    for (const auto& s : stats_) n += static_cast<size_t>(3 * s.blocks() * s.block_width() * s.block_width()) * 4;
    return n;
  }

  nlohmann::json metrics() const override {
    if (stats_.empty()) return nullptr;
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

  double lr_, wd_;
  config::NewtonMuonSettings settings_;
  MuonMatrixUpdate update_;
  dist::Communicator* comm_;
  std::vector<ParamRef> params_;
  MatrixSharding sharding_;
  std::vector<std::vector<float>> buf_;
  std::vector<int64_t> stat_of_;  // per parameter: index into stats_, or -1
  std::vector<InputStatistic> stats_;
  std::map<std::pair<int64_t, model::CapturePoint>, size_t> index_;
  std::vector<float> preconditioned_;
  int64_t refreshes_ = 0, failures_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_newton_muon(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                            const OptimizerContext& context) {
  return std::make_unique<NewtonMuon>(entry, std::move(params), context);
}

}  // namespace speedrun::optim
