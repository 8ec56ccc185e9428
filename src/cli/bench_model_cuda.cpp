#include "cli/bench_model_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "build_info.h"
#include "cli/gemm_ceiling.h"
#include "core/cuda_info.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "core/files.h"
#include "core/format_bytes.h"
#include "dist/communicator.h"
#include "model/flops.h"
#include "model/record26.h"
#include "model/registry.h"
#include "model/precision.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "train/memory_plan.h"
#if SPEEDRUN_HAVE_CUDA
#include "kernels/runtime/device_timing.h"
#endif

namespace speedrun::cli {

#if SPEEDRUN_HAVE_CUDA

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

void bench_model_cuda(const config::RunConfig& cfg, int timed, int warmup, const std::string& json_out) {
  const auto& m = cfg.model;
  const auto& t = cfg.train;
  const CudaStatus status = query_cuda();
  if (status.devices.empty()) throw UserError("bench --device cuda: no CUDA device: " + status.no_device_reason);
  const DType act = model::resolve_activation_dtype(t.activation_dtype, Device::cuda);
  const int64_t B = t.micro_batch_seqs, micro_tokens = B * m.seq_len;
  const int64_t micro_steps = t.batch_tokens / micro_tokens;

  // Memory first: a run that cannot fit fails here, with the numbers, before any allocation.
  // With the optimizers' state: whole training steps are timed too.
  const train::MemoryPlan plan = train::plan_memory(cfg, Device::cuda, act, /*with_optimizer_state=*/true);
  size_t free_b = 0, total_b = 0;
  device_memory_info(&free_b, &total_b);
  std::printf("device %s: %s free of %s; this bench needs:\n%s", status.devices[0].name.c_str(),
              format_bytes(free_b).c_str(), format_bytes(total_b).c_str(), plan.to_string().c_str());
  train::check_plan_fits(plan, free_b, total_b);

  // The ceiling before the model: its 384 MiB are freed again before the model allocates.
  const cuda::GemmCeiling ceiling = measure_gemm_ceiling();
  print_gemm_ceiling(ceiling);

  const std::unique_ptr<model::Model> owned = model::make_model(m, Device::cuda, B, act);
  model::Model& model = *owned;
  // record26's attention window grows with the step: the bench runs at the middle of the run,
  // where the window has its mean size (the attention's cost grows linearly with it). track3
  // ignores the position.
  const model::RunPosition at{t.steps / 2, t.steps};
  const bool record26 = m.arch == "record26";
  model.init_parameters(static_cast<uint64_t>(t.seed));
  model.zero_grad();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(m.vocab_size - 1));
  std::vector<int32_t> inputs(static_cast<size_t>(micro_tokens)), targets(inputs.size());
  for (auto& x : inputs) x = tok(rng);
  for (auto& x : targets) x = tok(rng);

  std::printf("bench %s on CUDA: %lld layers, d=%lld, seq %lld, micro-batch %lld x %lld tokens, %s activations, "
              "embedding read in %s\n",
              cfg.name.c_str(), (long long)m.n_layer, (long long)m.d_model, (long long)m.seq_len, (long long)B,
              (long long)m.seq_len, dtype_name(act), m.embedding_dtype.c_str());
  if (record26)
    std::printf("record26 at step %lld of %lld: long window %lld blocks of %lld tokens; FLOPs count the keys the "
                "mask keeps\n",
                (long long)at.step, (long long)at.steps, (long long)model::Record26::long_window_blocks(m, at),
                (long long)m.attn_block_size);
  // Each micro-batch is timed on its own between two events: it includes the host-to-device
  // copy of the ids and the loss's copy back (a synchronization), as in a training step.
  cuda::EventTimer timer;
  std::vector<double> ms;
  for (int i = 0; i < warmup + timed; ++i) {
    timer.start();
    model.forward_backward(inputs.data(), targets.data(), B, nullptr, at);
    const double elapsed = timer.stop_ms();
    if (i >= warmup) ms.push_back(elapsed);
  }
  const double fb_ms = median(ms);

  // Whole training steps, as the trainer runs them: micro_steps forward+backward passes
  // (gradients accumulating, the loss summed on the device and read once), every
  // optimizer's step, weights_updated() (the bf16 copies no optimizer kernel wrote are
  // remade at the next forward: all of them unless SPEEDRUN_WEIGHT_COPIES=optimizer). One untimed step, then min(timed, 3) timed: each is
  // micro_steps micro-batches long. The PyTorch side: scripts/bench_torch_gpu.py --step-steps.
  const auto comm = dist::make_local_communicator();
  auto opts = optim::build_optimizers(cfg.optimizers, model, {comm.get()});
  const std::vector<size_t> copies_written = optim::weight_copies_written(opts);
  std::vector<double> step_ms;
  const int step_timed = std::min(timed, 3);
  for (int s = 0; s < 1 + step_timed; ++s) {
    timer.start();
    model.zero_grad();
    model.begin_loss_sum();
    for (int64_t k = 0; k < micro_steps; ++k)
      model.forward_backward_summed(inputs.data(), targets.data(), B, nullptr, at);
    if (!std::isfinite(model.end_loss_sum())) throw UserError("bench: the step's loss is not finite");
    for (auto& opt : opts) opt->step(s, optim::lr_factor(cfg.schedule, 0, t.steps));
    model.weights_updated(copies_written);
    const double elapsed = timer.stop_ms();
    if (s >= 1) step_ms.push_back(elapsed);
  }
  size_t free_after = 0, total_after = 0;
  device_memory_info(&free_after, &total_after);  // in use now: the model, the optimizers, scratch, the context
  const double tokens_per_s = static_cast<double>(micro_tokens) / (fb_ms / 1000.0);
  // record26: the attention its mask keeps for these tokens at `at` (model/flops.h).
  const double flops = record26 ? model::flops_per_token(
                                      m, model::Record26::attention_keys_per_token(m, inputs.data(), B, at))
                                : model::flops_per_token(m);
  const double tflops = flops * tokens_per_s / 1e12;
  const double mfu = tflops / ceiling.tflops;
  std::printf("forward+backward: %.3f ms per micro-batch (median of %d after %d warm-up), %.0f tokens/s\n", fb_ms,
              timed, warmup, tokens_per_s);
  std::printf("model FLOPs:      %.1f MFLOP/token -> %.1f TFLOP/s achieved, MFU %.1f%% of the measured bf16 GEMM "
              "ceiling (%.1f TFLOP/s)\n",
              flops / 1e6, tflops, 100.0 * mfu, ceiling.tflops);
  std::printf("per step:         %lld micro-batch(es) = %.1f ms of forward+backward per %lld-token step (optimizer "
              "step not included; see bench --optimizers-only)\n",
              (long long)micro_steps, fb_ms * static_cast<double>(micro_steps), (long long)t.batch_tokens);
  std::printf("whole step:       %.1f ms (%lld micro-batch(es) + the optimizers' step, median of %d after 1 warm-up)\n",
              median(step_ms), (long long)micro_steps, step_timed);
  std::printf("device memory in use after the steps: %s (cudaMemGetInfo: total - free, the CUDA context included)\n",
              format_bytes(total_after - free_after).c_str());
  if (!json_out.empty()) {
    nlohmann::json j = {{"config", cfg.name},
                        {"commit", SPEEDRUN_GIT_COMMIT},
                        {"device", "cuda"},
                        {"device_name", status.devices[0].name},
                        {"activation_dtype", dtype_name(act)},
                        {"embedding_dtype", m.embedding_dtype},
                        {"micro_batch_seqs", B},
                        {"micro_batch_tokens", micro_tokens},
                        {"timed", timed},
                        {"warmup", warmup},
                        {"micro_batch_ms", fb_ms},
                        {"micro_batch_ms_all", ms},
                        {"tokens_per_s", tokens_per_s},
                        {"flops_per_token", flops},
                        {"run_position", {at.step, at.steps}},
                        {"tflops", tflops},
                        {"mfu", mfu},
                        {"gemm_ceiling", gemm_ceiling_json(ceiling)},
                        {"memory_plan_bytes", plan.total()},
                        {"model_activation_bytes", model.activation_bytes()},
                        {"micro_batches_per_step", micro_steps},
                        {"step_ms", median(step_ms)},
                        {"step_ms_all", step_ms},
                        {"device_used_bytes", total_after - free_after}};
    write_text_file_atomic(json_out, j.dump(2) + "\n");
  }
}

#else

void bench_model_cuda(const config::RunConfig&, int, int, const std::string&) {
  throw UserError("bench --device cuda: this binary was built without CUDA (use --device cpu)");
}

#endif

}  // namespace speedrun::cli
