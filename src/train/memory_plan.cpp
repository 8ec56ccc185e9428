#include "train/memory_plan.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <variant>

#include "build_info.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "core/format_bytes.h"
#include "kernels/ops/ops_cuda.h"
#include "kernels/runtime/workspace_sizes.h"
#include "model/gpt.h"
#include "model/registry.h"
#include "model/param_layout.h"
#include "optim/param_groups.h"

namespace speedrun::train {

size_t MemoryPlan::total() const {
  size_t t = 0;
  for (const MemoryItem& i : items) t += i.bytes;
  return t;
}

std::string MemoryPlan::to_string(bool final_newline) const {
  std::string out;
  char line[256];
  for (const MemoryItem& i : items) {
    std::snprintf(line, sizeof line, "  %-58s %12s%s\n", i.what.c_str(), format_bytes(i.bytes).c_str(),
                  i.estimate ? "  (estimate)" : "");
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-58s %12s%s", "total", format_bytes(total()).c_str(), final_newline ? "\n" : "");
  return out + line;
}

size_t estimate_kernel_scratch_bytes(const config::ModelConfig& m, int64_t B, bool flash_attention) {
  const size_t n = static_cast<size_t>(B * m.seq_len);
  auto align = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t list = align(n * sizeof(int32_t));
  const size_t cub = 2 * 2 * list + (size_t{1} << 20);
  const size_t embedding = 3 * list + cub;
  const size_t rows = static_cast<size_t>(B * m.n_head * m.seq_len);
  size_t attention = rows * sizeof(float);
  // kernels/ops/attention_flash.cu: delta (256-byte aligned) and the dQ accumulator behind it
  // (attention_flash_backward_workspace_bytes; test_memory_plan checks the two agree).
  if (flash_attention) attention = align(rows * sizeof(float)) + rows * static_cast<size_t>(m.head_dim) * sizeof(float);
  const size_t mib = size_t{1} << 20;
  return (std::max(embedding, attention) + mib - 1) / mib * mib;
}

bool flash_attention_selected() { return SPEEDRUN_HAVE_CUDA && cuda::attention_kernel() == cuda::AttentionKernel::flash; }

size_t estimate_optimizer_state_bytes(const config::RunConfig& cfg) {
  const model::ParamLayout layout(cfg.model);
  const auto groups = optim::assign_parameters(cfg.optimizers, layout);
  const auto& m = cfg.model;
  size_t floats = 0;
  for (size_t e = 0; e < cfg.optimizers.size(); ++e) {
    int64_t numel = 0;
    for (size_t i : groups[e]) numel += layout.params()[i].numel;
    const auto& settings = cfg.optimizers[e].settings;
    if (std::holds_alternative<config::AdamWSettings>(settings)) {
      floats += 2 * static_cast<size_t>(numel);
      continue;
    }
    floats += static_cast<size_t>(numel);  // momentum
    if (const auto* nm = std::get_if<config::NewtonMuonSettings>(&settings)) {
      // Per layer and preconditioned capture point: blocks of n x n, three matrices each.
      for (const std::string& point : nm->precondition) {
        int64_t n = m.d_model, blocks = 1;
        if (point == "attn_proj") n = m.attn_dim();
        if (point == "mlp_proj") {
          blocks = nm->mlp_proj_blocks;
          n = m.mlp_hidden() / std::max<int64_t>(1, blocks);
        }
        floats += static_cast<size_t>(m.n_layer * blocks * 3 * n * n);
      }
    }
  }
  return floats * sizeof(float);
}

WorkBytes estimate_cpu_optimizer_work_bytes(const config::RunConfig& cfg) {
  const model::ParamLayout layout(cfg.model);
  const auto groups = optim::assign_parameters(cfg.optimizers, layout);
  WorkBytes w;
  for (size_t e = 0; e < cfg.optimizers.size(); ++e) {
    const auto& settings = cfg.optimizers[e].settings;
    const bool muon = std::holds_alternative<config::MuonSettings>(settings);
    const bool newton_muon = std::holds_alternative<config::NewtonMuonSettings>(settings);
    if (!muon && !newton_muon) continue;
    size_t largest = 0, side = 0;
    for (size_t i : groups[e]) {
      const auto& p = layout.params()[i];
      if (static_cast<size_t>(p.numel) <= largest || p.shape.size() != 2) continue;
      largest = static_cast<size_t>(p.numel);
      side = static_cast<size_t>(std::min(p.shape[0], p.shape[1]));
    }
    w.held += (newton_muon ? 3 : 2) * largest * sizeof(float);
    w.transient += (2 * largest + 3 * side * side) * sizeof(float);
    if (newton_muon) {
      // Each preconditioned input's statistic keeps an n x n work matrix for its refresh.
      const auto& m = cfg.model;
      for (const std::string& point : std::get<config::NewtonMuonSettings>(settings).precondition) {
        int64_t n = m.d_model;
        if (point == "attn_proj") n = m.attn_dim();
        if (point == "mlp_proj")
          n = m.mlp_hidden() / std::max<int64_t>(1, std::get<config::NewtonMuonSettings>(settings).mlp_proj_blocks);
        w.held += static_cast<size_t>(m.n_layer * n * n) * sizeof(float);
      }
    }
  }
  return w;
}

void add_data_item(MemoryPlan& plan, int64_t largest_train_shard_tokens, int64_t local_batch_tokens,
                   int64_t local_val_tokens) {
  const size_t bytes = 2 * static_cast<size_t>(largest_train_shard_tokens) * sizeof(uint16_t) +
                       2 * static_cast<size_t>(local_batch_tokens + local_val_tokens) * sizeof(int32_t);
  plan.items.push_back({"data (training shard x2, a batch, the validation set)", bytes, true, false});
}

MemoryPlan plan_memory(const config::RunConfig& cfg, Device device, DType activations, bool with_optimizer_state) {
  const auto& m = cfg.model;
  const int64_t B = cfg.train.micro_batch_seqs;
  const model::ParamLayout layout(m);
  const size_t param_bytes = static_cast<size_t>(layout.total_numel()) * sizeof(float);
  MemoryPlan plan;
  char what[160];
  std::snprintf(what, sizeof what, "parameters (f32, %.1fM)", static_cast<double>(layout.total_numel()) / 1e6);
  plan.items.push_back({what, param_bytes, false});
  plan.items.push_back({"gradients (f32)", param_bytes, false});
  if (const size_t copies = model::plan_weight_copy_bytes(m, device, activations); copies > 0)
    plan.items.push_back({"bf16 weight copies", copies, false});
  // The storage choices that change the activations (model::Gpt::Storage) are named on the line.
  const model::Gpt::Storage storage =
      m.arch == "track3" ? model::Gpt::storage_choice(device, activations) : model::Gpt::Storage{};
  std::snprintf(what, sizeof what, "activations (%s, %lld x %lld tokens%s%s)", dtype_name(activations), (long long)B,
                (long long)m.seq_len, storage.fused_head ? ", fused head" : "",
                storage.relu2_recompute ? ", relu^2 recomputed" : "");
  plan.items.push_back({what, model::plan_activation_bytes(m, device, B, activations), false});
  if (device == Device::cuda) {
    // The GEMM epilogue choice decides the bf16 bias copies (counted above for track3); read
    // it for every model, so that a misspelt SPEEDRUN_GEMM_EPILOGUE stops any CUDA run here.
    // The head and ReLU^2 choices likewise (Gpt::storage_choice reads both; record26 ignores
    // them, but a typo must not pass silently on its runs either).
    if (SPEEDRUN_HAVE_CUDA) {
      static_cast<void>(cuda::gemm_epilogue());
      static_cast<void>(model::Gpt::storage_choice(device, activations));
    }
    plan.items.push_back({"cuBLASLt workspace", cuda::kGemmWorkspaceBytes, false});
    const bool flash = activations == DType::bf16 && flash_attention_selected();
    plan.items.push_back({flash ? "kernel scratch (embedding sort, flash attention dQ)"
                                : "kernel scratch (embedding sort, attention)",
                          estimate_kernel_scratch_bytes(m, B, flash), true});
  }
  if (device == Device::cpu) {
    // The attention backward's row terms (B*H*T floats) and the cross-entropy's two
    // vocabulary rows per thread.
    const size_t attention = static_cast<size_t>(B * m.n_head * m.seq_len) * sizeof(float);
    const size_t cross_entropy =
        2 * static_cast<size_t>(m.padded_vocab_size) * sizeof(float) * static_cast<size_t>(omp_get_max_threads());
    plan.items.push_back(
        {"ops scratch (attention backward, cross-entropy rows)", attention + cross_entropy, true, true});
  }
  if (with_optimizer_state) {
    plan.items.push_back({"optimizer state", estimate_optimizer_state_bytes(cfg), true});
    if (device == Device::cpu) {
      const WorkBytes work = estimate_cpu_optimizer_work_bytes(cfg);
      if (work.held > 0) plan.items.push_back({"optimizer work buffers (update, orthogonalized)", work.held, true});
      if (work.transient > 0)
        plan.items.push_back({"Newton-Schulz iterates (during a step)", work.transient, true, true});
    }
  }
  return plan;
}

void check_host_plan_fits(const MemoryPlan& plan, const HostMemory& host, int processes_on_node) {
  // The available figure (MemAvailable, the cgroup) is the node's, shared by every rank on it.
  const size_t ranks = static_cast<size_t>(std::max(1, processes_on_node));
  const size_t needed = plan.total() * ranks;
  if (needed <= host.available) return;
  const std::string each =
      ranks > 1 ? " (" + format_bytes(plan.total()) + " for each of the " + std::to_string(ranks) +
                      " processes on this node)"
                : "";
  throw UserError("the run needs " + format_bytes(needed) + " (" + std::to_string(needed) + " bytes) of host memory" +
                  each + " but only " + format_bytes(host.available) + " (" + std::to_string(host.available) +
                  " bytes) is available (" + host.limits +
                  "); make the model smaller (model.n_layer, model.d_model, model.seq_len) or lower "
                  "train.micro_batch_seqs (the activations scale with it)" +
                  (ranks > 1 ? ", or start fewer processes per node" : "") + ". The plan:\n" +
                  plan.to_string(/*final_newline=*/false));
}

void check_plan_fits(const MemoryPlan& plan, size_t free_bytes, size_t total_bytes) {
  if (plan.total() <= free_bytes) return;
  throw UserError("the run needs " + format_bytes(plan.total()) + " of device memory but only " +
                  format_bytes(free_bytes) + " of " + format_bytes(total_bytes) +
                  " is free; lower train.micro_batch_seqs (the activations scale with it), or use "
                  "train.activation_dtype = \"bf16\". The plan:\n" + plan.to_string(/*final_newline=*/false));
}

}  // namespace speedrun::train
