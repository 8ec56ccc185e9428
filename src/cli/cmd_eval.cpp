// speedrun eval: the validation loss of a checkpoint on any token shards, computed as the
// trainer's validation computes it (train/evaluation.h), so that on the run's own data,
// device and thread count it reproduces the run's val_loss.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "cli/checkpoint_model.h"
#include "cli/commands.h"
#include "core/error.h"
#include "data/loader.h"
#include "data/shard.h"
#include "model/device_support.h"
#include "model/precision.h"
#include "model/registry.h"
#include "train/device_choice.h"
#include "train/evaluation.h"

namespace speedrun::cli {

namespace {

struct Options {
  std::string checkpoint, data, device = "auto";
  int64_t tokens = 0, threads = 0, batch_seqs = 0;
  bool json = false;
};

void run_eval(const Options& o) {
  CheckpointModel cm = open_checkpoint(o.checkpoint);
  const config::RunConfig& cfg = cm.config;
  const config::ModelConfig& m = cfg.model;
  Device device = train::resolve_device(o.device);
  if (device == Device::cuda) {
    // What the CUDA backend cannot run: on --device auto the CPU evaluates it instead; an
    // explicit --device cuda is refused, naming the checkpoint (the checks and their
    // messages are the trainer's: model/registry.h, model/device_support.h).
    try {
      model::check_arch_supported(m, Device::cuda);
      model::check_model_runs_on(m, Device::cuda);
    } catch (const UserError& e) {
      if (o.device != "auto") throw UserError(cm.path.string() + ": " + e.what() + "; use --device cpu");
      spdlog::info("evaluating on the CPU: {}", e.what());
      device = Device::cpu;
    }
  }
  // The run's settings that shape the computation: its activation dtype on this device, its
  // micro-batch (the grouping of the sequences, and the order of the sum).
  // (A CUDA run's bf16 activations are read as f32 on the CPU, which has no other.)
  const DType activations =
      device == Device::cpu ? DType::f32 : model::resolve_activation_dtype(cfg.train.activation_dtype, device);
  const int64_t tokens = o.tokens > 0 ? o.tokens : cfg.data.val_tokens;
  if (tokens % m.seq_len != 0)
    throw UserError(fmt::format("--tokens {} is not a multiple of model.seq_len = {} of {} (the loss is taken over "
                                "whole sequences)",
                                tokens, m.seq_len, cm.path.string()));
  const auto shards = data::list_shards(o.data, "--data");
  int64_t available = 0;
  for (const auto& s : shards) available += s.num_tokens;
  if (available < tokens + 1)
    throw UserError(fmt::format("--data {}: its {} shard(s) hold {} tokens; evaluating {} needs {} (tokens + 1 for the "
                                "last target); lower --tokens",
                                o.data, shards.size(), available, tokens, tokens + 1));
  set_cpu_threads(o.threads, cfg.train.threads);
  const int64_t micro = o.batch_seqs > 0 ? o.batch_seqs : cfg.train.micro_batch_seqs;
  const int64_t seqs = tokens / m.seq_len;
  build_model(cm, device, micro, activations);  // as the trainer sizes it: the same head chunks
  const data::Batch val = data::load_validation_set(shards, tokens, m.seq_len, 0, 1, m.vocab_size, "--data");

  const auto t0 = std::chrono::steady_clock::now();
  // The checkpoint's step and the run's length: where the run stood (record26's window).
  const train::ValSum sum = train::evaluate_loss(*cm.model, val, micro, m.seq_len, {cm.step, cfg.train.steps});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sum.tokens != tokens) throw std::logic_error("eval evaluated " + std::to_string(sum.tokens) + " tokens");
  // The trainer's division: the summed loss over the count of tokens, in double.
  const double val_loss = sum.loss_sum / static_cast<double>(sum.tokens);
  if (o.json) {
    nlohmann::json shard_paths = nlohmann::json::array();
    for (const auto& s : shards) shard_paths.push_back(s.path.string());
    const nlohmann::json j = {{"checkpoint", cm.path.string()},
                              {"step", cm.step},
                              {"data", o.data},
                              {"shards", shard_paths},
                              {"tokens", sum.tokens},
                              {"val_loss", std::isfinite(val_loss) ? nlohmann::json(val_loss) : nlohmann::json()},
                              {"loss_sum", std::isfinite(sum.loss_sum) ? nlohmann::json(sum.loss_sum) : nlohmann::json()},
                              {"device", device_name(device)},
                              {"micro_batch_seqs", micro},
                              {"threads", omp_get_max_threads()},
                              {"seconds", seconds}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("val_loss %.6f on %lld tokens of %s (checkpoint %s, step %lld)\n", val_loss,
                static_cast<long long>(sum.tokens), o.data.c_str(), cm.path.string().c_str(),
                static_cast<long long>(cm.step));
  }
  spdlog::info("evaluated {} tokens in {:.2f} s on {} ({} sequence(s) of {}, micro-batches of {}, {} thread(s))",
               sum.tokens, seconds, device_name(device), seqs, m.seq_len, micro, omp_get_max_threads());
  if (!std::isfinite(val_loss))
    throw UserError(fmt::format("the validation loss of {} is {}", cm.path.string(), val_loss));
}

}  // namespace

Command add_eval_command(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "eval", "validation loss of a checkpoint (a .safetensors file or a run directory) on token shards");
  sub->add_option("checkpoint", o->checkpoint, "checkpoint file, or a run directory (its newest checkpoint)")->required();
  sub->add_option("--data", o->data, "token shards (.bin glob), read as the trainer reads data.val_glob")->required();
  sub->add_option("--tokens", o->tokens,
                  "tokens to evaluate, the first of the shards (a multiple of model.seq_len; default: the run's "
                  "data.val_tokens)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 48));
  sub->add_option("--device", o->device, "auto, cpu or cuda (auto: CUDA when a device exists)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_option("--threads", o->threads, "CPU threads (default: the run's train.threads, 0 = all cores)")
      ->check(CLI::Range(0, 4096));
  sub->add_option("--batch-seqs", o->batch_seqs,
                  "sequences per forward (default: the run's train.micro_batch_seqs, which reproduces its val_loss "
                  "exactly; fewer need less memory and may differ in the last bits)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  sub->add_flag("--json", o->json, "print one JSON object (val_loss, tokens, shards, checkpoint, step)");
  return {sub, [o] { run_eval(*o); }};
}

}  // namespace speedrun::cli
