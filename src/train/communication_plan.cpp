#include "train/communication_plan.h"

#include <algorithm>
#include <variant>

#include <spdlog/fmt/fmt.h>

#include "core/format_bytes.h"
#include "dist/grad_buckets.h"
#include "model/param_layout.h"
#include "optim/matrix_sharding.h"
#include "optim/param_groups.h"
#include "optim/reduction_overlap.h"

namespace speedrun::train {

namespace {

// AdamW with `world` ranks (optim/adamw.cpp build_buckets): per bucket world * shard + shard floats.
size_t adamw_floats(const std::vector<int64_t>& numels, int64_t world, size_t bucket_bytes) {
  std::vector<size_t> order(numels.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = bucket_bytes == 0 ? k : order.size() - 1 - k;
  std::vector<size_t> bytes;
  for (size_t k : order) bytes.push_back(static_cast<size_t>(numels[k]) * sizeof(float));
  size_t floats = 0;
  for (const std::vector<size_t>& positions : dist::assign_buckets(bytes, bucket_bytes)) {
    int64_t total = 0;
    for (size_t i : positions) total += numels[order[i]];
    const int64_t shard = std::max<int64_t>((total + world - 1) / world, 1);
    floats += static_cast<size_t>((world + 1) * shard);
  }
  return floats;
}

// A matrix optimizer's rounds (optim/matrix_sharding.h, device_matrix_sharding.h).
size_t matrix_floats(const std::vector<optim::ParamRef>& matrices, int64_t world, bool overlapped, Device device) {
  const std::vector<size_t> order = optim::MatrixSharding::shape_order(matrices);
  std::vector<int64_t> widths;
  for (size_t base = 0; base < order.size(); base += static_cast<size_t>(world)) {
    int64_t w = 0;
    for (size_t j = base; j < std::min(order.size(), base + static_cast<size_t>(world)); ++j)
      w = std::max(w, matrices[order[j]].param.numel());
    widths.push_back(w);
  }
  const int64_t widest = widths.empty() ? 0 : *std::max_element(widths.begin(), widths.end());
  size_t floats = 0;
  if (device == Device::cuda) {
    // Every round's block; one send and one gather buffer of the widest round; attached, each
    // round's own send buffer.
    for (int64_t w : widths) floats += static_cast<size_t>(w + (overlapped ? world * w : 0));
    return floats + 2 * static_cast<size_t>(world * std::max<int64_t>(widest, 1));
  }
  if (overlapped) {
    for (int64_t w : widths) floats += static_cast<size_t>((world + 1) * w);
    return floats;
  }
  return static_cast<size_t>((2 * world + 1) * widest);  // send, gathered (world x widest), receive
}

}  // namespace

size_t plan_reduction_buffer_bytes(const config::RunConfig& cfg, int world, Device device) {
  if (world <= 1) return 0;
  const model::ParamLayout layout(cfg.model);
  const auto groups = optim::assign_parameters(cfg.optimizers, layout);
  const size_t bucket_bytes = optim::grad_bucket_bytes(cfg.train.grad_bucket_mb);
  const bool overlapped = bucket_bytes > 0;
  size_t floats = 0;
  for (size_t e = 0; e < cfg.optimizers.size(); ++e) {
    const bool adamw = std::holds_alternative<config::AdamWSettings>(cfg.optimizers[e].settings);
    if (adamw) {
      std::vector<int64_t> numels;
      for (size_t i : groups[e]) numels.push_back(layout.params()[i].numel);
      floats += adamw_floats(numels, world, bucket_bytes);
      continue;
    }
    // The matrices as optim::build_optimizers makes them: a (n, r, c) stack is n matrices.
    std::vector<optim::ParamRef> matrices;
    for (size_t i : groups[e]) {
      const model::ParamSpec& s = layout.params()[i];
      const int64_t n = s.shape.size() == 3 ? s.shape[0] : 1;
      const int64_t r = s.shape.size() == 3 ? s.shape[1] : s.shape[0];
      const int64_t c = s.shape.size() == 3 ? s.shape[2] : (s.shape.size() > 1 ? s.shape[1] : 1);
      for (int64_t j = 0; j < n; ++j)
        matrices.push_back({s.name, Tensor(nullptr, DType::f32, Device::cpu, {r, c}), Tensor{}, i});
    }
    floats += matrix_floats(matrices, world, overlapped, device);
  }
  return floats * sizeof(float);
}

size_t plan_checkpoint_gather_bytes(const config::RunConfig& cfg, Device device) {
  // What each optimizer's export_state holds: AdamW m and v; Muon and RMNP the momentum;
  // Newton-Muon the momentum, per preconditioned input its covariance and inverse (blocks of
  // n x n; the statistic being accumulated is empty between steps and not saved) and two
  // i64 counters.
  const model::ParamLayout layout(cfg.model);
  const auto groups = optim::assign_parameters(cfg.optimizers, layout);
  const auto& m = cfg.model;
  size_t bytes = 0;
  for (size_t e = 0; e < cfg.optimizers.size(); ++e) {
    int64_t numel = 0;
    for (size_t i : groups[e]) numel += layout.params()[i].numel;
    const auto& settings = cfg.optimizers[e].settings;
    const bool adamw = std::holds_alternative<config::AdamWSettings>(settings);
    bytes += (adamw ? 2 : 1) * static_cast<size_t>(numel) * sizeof(float);
    if (const auto* nm = std::get_if<config::NewtonMuonSettings>(&settings)) {
      for (const std::string& point : nm->precondition) {
        int64_t n = m.d_model, blocks = 1;
        if (point == "attn_proj") n = m.attn_dim();
        if (point == "mlp_proj") {
          blocks = nm->mlp_proj_blocks;
          n = m.mlp_hidden() / std::max<int64_t>(1, blocks);
        }
        bytes += static_cast<size_t>(m.n_layer * blocks * 2 * n * n) * sizeof(float);
      }
      bytes += 2 * sizeof(int64_t);
    }
  }
  if (device != Device::cpu) bytes += static_cast<size_t>(model::ParamLayout(cfg.model).total_numel()) * sizeof(float);
  return bytes;
}

void add_communication_items(MemoryPlan& plan, const config::RunConfig& cfg, int world, Device device) {
  if (world > 1)
    plan.items.push_back({fmt::format("gradient reduction buffers ({} ranks, buckets of {} MiB)", world,
                                      cfg.train.grad_bucket_mb),
                          plan_reduction_buffer_bytes(cfg, world, device), false, false});
  if (device == Device::cpu)
    plan.items.push_back({"checkpoint: the optimizer state gathered to be written", plan_checkpoint_gather_bytes(cfg, device),
                          true, true});
}

}  // namespace speedrun::train
