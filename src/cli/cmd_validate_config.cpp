// speedrun validate-config: load, override and check a run config; print it resolved.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "build_info.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "config/run_config.h"
#include "core/error.h"
#include "core/format_bytes.h"
#include "core/host_memory.h"
#include "data/loader.h"
#include "data/shard.h"
#include "model/device_support.h"
#include "model/param_layout.h"
#include "model/precision.h"
#include "optim/param_groups.h"
#include "train/device_choice.h"
#include "train/memory_plan.h"

namespace speedrun::cli {

namespace {
struct Options {
  ConfigOptions config;
  bool reference = false;
};
// The data globs: a glob that matches nothing (or a shard with a bad header) is a
// warning, not an error: the config itself is valid, and its data may be fetched later
// (the Track 3 configs name FineWeb shards that are absent until downloaded); a run
// would fail on it at start.
std::vector<data::ShardInfo> report_glob(const std::string& glob, const char* key) {
  try {
    std::vector<data::ShardInfo> shards = data::list_shards(glob, key);
    int64_t tokens = 0;
    for (const auto& s : shards) tokens += s.num_tokens;
    std::fprintf(stderr, "%s: %zu shard(s), %lld tokens\n", key, shards.size(), static_cast<long long>(tokens));
    return shards;
  } catch (const UserError& e) {
    spdlog::warn("{} (a run would fail)", e.what());
    return {};
  }
}

// The memory plans a run would check before allocating: the host's for --device cpu
// (data included when the shards were found), checked against this machine, and, in a
// CUDA build, the device's.
void report_memory(const config::RunConfig& cfg, const std::vector<data::ShardInfo>& train_shards) {
  try {
    const DType act = model::resolve_activation_dtype(cfg.train.activation_dtype, Device::cpu);
    model::resolve_embedding_dtype(cfg.model, Device::cpu);
    train::MemoryPlan plan = train::plan_memory(cfg, Device::cpu, act, /*with_optimizer_state=*/true);
    int64_t largest = 0;
    for (const auto& s : train_shards) largest = std::max(largest, s.num_tokens);
    if (!train_shards.empty()) train::add_data_item(plan, largest, cfg.train.batch_tokens, cfg.data.val_tokens);
    const HostMemory host = query_host_memory();
    std::fprintf(stderr, "host memory plan for --device cpu, one process (%s available here: %s):\n%s",
                 format_bytes(host.available).c_str(), host.limits.c_str(), plan.to_string().c_str());
    try {
      train::check_host_plan_fits(plan, host);
    } catch (const UserError&) {
      spdlog::warn("a CPU run would not fit on this machine: it needs {} ({} bytes), {} ({} bytes) is available",
                   format_bytes(plan.total()), plan.total(), format_bytes(host.available), host.available);
    }
  } catch (const UserError& e) {
    std::fprintf(stderr, "--device cpu: %s\n", e.what());
  }
  // A run of this config on CUDA (train.device cuda, or auto with a device here) would
  // refuse a model the kernels cannot run.
  const std::string& device = cfg.train.device;
  if (device == "cuda" || (device == "auto" && train::resolve_device("auto") == Device::cuda)) {
    try {
      model::check_model_runs_on(cfg.model, Device::cuda);
    } catch (const UserError& e) {
      spdlog::warn("{} (a CUDA run would fail)", e.what());
    }
  }
  if (!SPEEDRUN_HAVE_CUDA) return;
  try {
    const DType act = model::resolve_activation_dtype(cfg.train.activation_dtype, Device::cuda);
    model::resolve_embedding_dtype(cfg.model, Device::cuda);
    const train::MemoryPlan plan = train::plan_memory(cfg, Device::cuda, act, /*with_optimizer_state=*/true);
    std::fprintf(stderr, "device memory plan for --device cuda, per GPU:\n%s", plan.to_string().c_str());
  } catch (const UserError& e) {
    std::fprintf(stderr, "--device cuda: %s\n", e.what());
  }
}

}  // namespace

Command add_validate_config_command(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("validate-config",
                                     "check a run config (every problem is listed) and print it resolved, defaults "
                                     "included");
  add_config_options(sub, opts->config, /*config_required=*/false);
  sub->add_flag("--reference", opts->reference, "print the reference of every config key (Markdown) and exit");
  // CONFIG is required unless --reference is given: a usage error (exit 2, with the
  // usage), raised while parsing like CLI11's own required-argument errors.
  sub->callback([opts] {
    if (opts->config.config.empty() && !opts->reference) throw CLI::RequiredError("config (or --reference)");
  });
  return {sub, [opts] {
            if (opts->reference) {
              std::fputs(config::config_reference_markdown().c_str(), stdout);
              return;
            }
            const config::RunConfig cfg = load_config(opts->config);
            // Parameter groups are checked too: every parameter in exactly one entry.
            const model::ParamLayout layout(cfg.model);
            const auto groups = optim::assign_parameters(cfg.optimizers, layout);
            std::printf("%s\n", config::to_json(cfg).dump(2).c_str());
            for (size_t e = 0; e < groups.size(); ++e) {
              int64_t numel = 0;
              for (size_t i : groups[e]) numel += layout.params()[i].numel;
              std::fprintf(stderr, "optimizers[%zu] %s: %zu parameters, %.2fM values\n", e,
                           cfg.optimizers[e].type.c_str(), groups[e].size(), static_cast<double>(numel) / 1e6);
            }
            const auto train_shards = report_glob(cfg.data.train_glob, "data.train_glob");
            if (!train_shards.empty()) {
              // Enough batches for train.steps, as the run checks at start (one process;
              // the global batch is the same for any number).
              try {
                data::TrainLoader::check_data(train_shards,
                                              {cfg.train.batch_tokens, 0, 1, cfg.model.vocab_size, cfg.data.epochs,
                                               "data.train_glob", cfg.data.align_to_bos, cfg.model.seq_len},
                                              cfg.train.steps);
              } catch (const UserError& e) {
                spdlog::warn("{} (a run would fail)", e.what());
              }
            }
            const auto val_shards = report_glob(cfg.data.val_glob, "data.val_glob");
            int64_t val_available = 0;
            for (const auto& s : val_shards) val_available += s.num_tokens;
            if (!val_shards.empty() && val_available < cfg.data.val_tokens + 1)
              spdlog::warn("data.val_glob: data.val_tokens = {} needs {} tokens but the shard(s) hold {} (a run would "
                           "fail)",
                           cfg.data.val_tokens, cfg.data.val_tokens + 1, val_available);
            report_memory(cfg, train_shards);
            std::fprintf(stderr, "%s: ok\n", opts->config.config.c_str());
          }};
}

}  // namespace speedrun::cli
