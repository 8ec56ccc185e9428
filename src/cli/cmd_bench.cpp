// speedrun bench: times training steps of a config's model on random tokens (no data
// needed) and prints ms/step, tokens/s and achieved model FLOP/s.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "build_info.h"
#include "cli/bench_kernels.h"
#include "cli/bench_model_cuda.h"
#include "cli/bench_optimizers.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/cuda_info.h"
#include "core/error.h"
#include "core/files.h"
#include "core/format_bytes.h"
#include "core/host_memory.h"
#include "model/device_support.h"
#include "model/flops.h"
#include "model/record26.h"
#include "model/registry.h"
#include "model/precision.h"
#include "optim/optimizer.h"
#include "dist/communicator.h"
#include "optim/schedule.h"
#include "train/device_choice.h"
#include "train/memory_plan.h"

namespace speedrun::cli {

namespace {

struct Options {
  ConfigOptions config;
  int steps = 5, warmup = 1;
  std::string device, json_out;
  bool optimizers_only = false;
  bool kernels = false;
};

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The device of `bench --optimizers-only`: the optimizers run on CUDA without the model's
// forward pass, so only the build and a visible device are needed ("auto": CUDA when both).
Device optimizer_bench_device(const std::string& requested) {
  if (requested == "cpu") return Device::cpu;
  const CudaStatus cuda = query_cuda();
  if (requested == "auto") return SPEEDRUN_HAVE_CUDA && !cuda.devices.empty() ? Device::cuda : Device::cpu;
  if (requested != "cuda") throw UserError("device '" + requested + "': expected one of auto, cpu, cuda");
  if (!SPEEDRUN_HAVE_CUDA)
    throw UserError("bench --optimizers-only --device cuda: this binary was built without CUDA (use --device cpu)");
  if (cuda.devices.empty())
    throw UserError("bench --optimizers-only --device cuda: no CUDA device: " + cuda.no_device_reason);
  return Device::cuda;
}

void run_bench(const Options& o) {
  if (o.kernels) {
    // Before the config is read: in a build without CUDA nothing else can be said.
    if (!SPEEDRUN_HAVE_CUDA)
      throw UserError("bench --kernels times the CUDA kernels and needs a build with CUDA: this binary was built "
                      "without CUDA");
    if (!o.device.empty() && o.device != "cuda" && o.device != "auto")
      throw UserError("bench --kernels times the CUDA kernels: --device " + o.device + " is not possible (use cuda)");
    const config::RunConfig cfg = load_config(o.config);
    // The kernel table is Track 3's forward + backward (model/kernel_table.h).
    if (cfg.model.arch != "track3")
      throw UserError(o.config.config + ": model.arch = " + cfg.model.arch +
                      "; bench --kernels supports model.arch track3 only (its kernel table is Track 3's model)");
    bench_kernels(cfg, o.steps, o.warmup, o.json_out);
    return;
  }
  const config::RunConfig cfg = load_config(o.config);
  if (o.optimizers_only) {
    bench_optimizers(cfg, o.steps, o.warmup, o.json_out,
                     optimizer_bench_device(o.device.empty() ? cfg.train.device : o.device));
    return;
  }
  const auto& m = cfg.model;
  const auto& t = cfg.train;
  // The model alone may run on CUDA before the optimizers do: forward+backward, no step.
  // A model the CUDA kernels cannot run (a head_dim without a CUDA attention instance) is
  // refused first, device or not.
  const std::string requested = o.device.empty() ? t.device : o.device;
  if (requested == "cuda") {
    model::check_arch_supported(m, Device::cuda);
    model::check_model_runs_on(m, Device::cuda);
  }
  const Device device = train::resolve_device(requested);
  model::check_arch_supported(m, device);
  model::check_model_runs_on(m, device);
  if (device == Device::cuda) {
    bench_model_cuda(cfg, o.steps, o.warmup, o.json_out);
    return;
  }
  if (t.threads > 0) omp_set_num_threads(static_cast<int>(t.threads));
  const int64_t micro_tokens = t.micro_batch_seqs * m.seq_len;
  const int64_t micro_steps = t.batch_tokens / micro_tokens;
  const DType activations = model::resolve_activation_dtype(t.activation_dtype, device);
  // Memory first, as train does: a model too big for this machine fails here, with the
  // numbers, before any allocation (the bench's tokens are random: no data).
  const train::MemoryPlan plan = train::plan_memory(cfg, device, activations, /*with_optimizer_state=*/true);
  const HostMemory host = query_host_memory();
  train::check_host_plan_fits(plan, host);  // a refusal shows the plan itself
  spdlog::info("host memory plan ({} available: {}):\n{}", format_bytes(host.available), host.limits,
               plan.to_string(/*final_newline=*/false));

  const std::unique_ptr<model::Model> model_of_arch = model::make_model(m, device, t.micro_batch_seqs, activations);
  model::Model& model = *model_of_arch;
  model.init_parameters(static_cast<uint64_t>(t.seed));
  const auto comm = dist::make_local_communicator();
  auto opts = optim::build_optimizers(cfg.optimizers, model, {comm.get()});
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(m.vocab_size - 1));
  std::vector<int32_t> inputs(static_cast<size_t>(micro_tokens)), targets(inputs.size());
  for (auto& x : inputs) x = tok(rng);
  for (auto& x : targets) x = tok(rng);

  std::printf("bench %s: %lld layers, d=%lld, seq %lld, %lld x %lld tokens per micro-batch, %lld micro-batch(es) per "
              "step, device %s, %d threads\n",
              cfg.name.c_str(), (long long)m.n_layer, (long long)m.d_model, (long long)m.seq_len,
              (long long)t.micro_batch_seqs, (long long)m.seq_len, (long long)micro_steps, device_name(device),
              omp_get_max_threads());
  std::vector<double> fb_ms, opt_ms, step_ms;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    const auto t0 = Clock::now();
    model.zero_grad();
    double fb = 0.0;
    for (int64_t k = 0; k < micro_steps; ++k) {
      const auto f0 = Clock::now();
      model.forward_backward(inputs.data(), targets.data(), t.micro_batch_seqs, nullptr, {0, t.steps});
      fb += ms_since(f0);
    }
    const auto o0 = Clock::now();
    for (auto& opt : opts) opt->step(s, optim::lr_factor(cfg.schedule, 0, t.steps));
    model.weights_updated(optim::weight_copies_written(opts));
    const double opt_time = ms_since(o0);
    const double total = ms_since(t0);
    if (s >= o.warmup) {
      fb_ms.push_back(fb / static_cast<double>(micro_steps));
      opt_ms.push_back(opt_time);
      step_ms.push_back(total);
    }
  }
  const double step = median(step_ms);
  const double tokens_per_s = static_cast<double>(t.batch_tokens) / (step / 1000.0);
  // record26: the attention its mask keeps for these tokens at the bench's run position
  // (step 0: the smallest window), as the CUDA bench counts it (model/flops.h).
  const double flops =
      m.arch == "record26"
          ? model::flops_per_token(m, model::Record26::attention_keys_per_token(m, inputs.data(),
                                                                                t.micro_batch_seqs, {0, t.steps}))
          : model::flops_per_token(m);
  const double tflops = flops * tokens_per_s / 1e12;
  std::printf("forward+backward: %.2f ms per micro-batch (%.0f tokens/s)\n", median(fb_ms),
              static_cast<double>(micro_tokens) / (median(fb_ms) / 1000.0));
  std::printf("optimizer step:   %.2f ms\n", median(opt_ms));
  std::printf("training step:    %.2f ms (median of %d), %.0f tokens/s, %.1f MFLOP/token, %.3f TFLOP/s achieved\n",
              step, o.steps, tokens_per_s, flops / 1e6, tflops);
  if (!o.json_out.empty()) {
    nlohmann::json j = {{"config", cfg.name},
                        {"commit", SPEEDRUN_GIT_COMMIT},
                        {"device", device_name(device)},
                        {"threads", omp_get_max_threads()},
                        {"micro_batch_ms", median(fb_ms)},
                        {"optimizer_ms", median(opt_ms)},
                        {"step_ms", step},
                        {"tokens_per_s", tokens_per_s},
                        {"flops_per_token", flops},
                        {"tflops", tflops}};
    write_text_file_atomic(o.json_out, j.dump(2) + "\n");
  }
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "bench", "time training steps of a config's model on random tokens: ms/step, tokens/s, FLOP/s");
  add_config_options(sub, o->config);
  sub->add_option("--steps", o->steps, "timed steps (the median is reported); on CUDA, timed micro-batches")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  sub->add_option("--warmup", o->warmup, "untimed steps first")->check(CLI::Range(0, 100000))->capture_default_str();
  sub->add_option("--device", o->device, "auto, cpu or cuda (default: the config's train.device)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_option("--json", o->json_out, "also write the figures to this JSON file (default: none)");
  auto* kernels = sub->add_flag(
      "--kernels", o->kernels,
      "CUDA only: a per-op table of one micro-batch's forward+backward at the config's shapes (ms, TFLOP/s or GB/s, "
      "% of the GEMM ceiling or copy bandwidth measured in the same run) and its sum against the whole micro-batch");
  sub->add_flag("--optimizers-only", o->optimizers_only,
                "time only the optimizer steps, on random gradients: ordinary steps, and Newton-Muon's capture of "
                "one micro-batch and its refresh steps")
      ->excludes(kernels);
  return {sub, [o] { run_bench(*o); }};
}

}  // namespace speedrun::cli
