#include "cli/bench_optimizers.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "build_info.h"
#include "cli/gemm_ceiling.h"
#include "core/buffer.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "core/files.h"
#include "dist/communicator.h"
#include "model/registry.h"
#include "optim/muon.h"
#include "optim/newton_schulz.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"
#if SPEEDRUN_HAVE_CUDA
#include "kernels/ops/ops_cuda.h"
#include "kernels/optim/optim_cuda.h"
#endif

namespace speedrun::cli {

namespace {

using Clock = std::chrono::steady_clock;
double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Milliseconds of one call of fn: wall clock on the CPU; CUDA events around the work fn
// queues on the device (it synchronizes on the stop event, outside the timed span).
double time_once_ms(Device device, const std::function<void()>& fn) {
  if (device == Device::cuda) {
#if SPEEDRUN_HAVE_CUDA
    return cuda::time_device_ms(fn, 0, 1);
#endif
  }
  const auto t0 = Clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::vector<float> normal_values(int64_t n, std::mt19937_64& rng, double stddev) {
  std::normal_distribution<float> d(0.0f, static_cast<float>(stddev));
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// The first step at or after `from` on which the optimizer captures, or -1.
int64_t next_capture_step(optim::Optimizer& o, int64_t from) {
  for (int64_t s = from; s < from + 100000; ++s)
    if (o.capture_sink(s)) return s;
  return -1;
}

// Newton-Schulz FLOPs of one step of a Muon / Newton-Muon entry (2mnk per product; per
// matrix and iteration X X^T, A A and B X: 4 r^2 c + 2 r^3 with r = min, c = max of the
// shape), 0 for other optimizers.
double newton_schulz_flops(const config::OptimizerConfig& entry, const std::vector<size_t>& group, model::Model& model) {
  const config::MuonSettings* s = nullptr;
  if (const auto* m = std::get_if<config::MuonSettings>(&entry.settings)) s = m;
  if (const auto* m = std::get_if<config::NewtonMuonSettings>(&entry.settings)) s = m;
  if (!s) return 0.0;
  const double steps = static_cast<double>(optim::newton_schulz_spec(*s).steps);
  double flops = 0.0;
  for (size_t i : group) {
    const Tensor p = model.param(i);
    const double r = static_cast<double>(std::min(p.size(0), p.size(1)));
    const double c = static_cast<double>(std::max(p.size(0), p.size(1)));
    flops += steps * (4.0 * r * r * c + 2.0 * r * r * r);
  }
  return flops;
}

// Median milliseconds of the Newton-Schulz GEMMs alone of a Muon / Newton-Muon entry on
// CUDA (0 for other entries or on the CPU): a separate MuonDevice over the entry's matrices
// with the entry's coefficients, one step with lr 0 first (the parameters stay as they
// are: p * 1 - 0 * u) so that the iteration buffers hold real values.
double newton_schulz_ms(Device device, const config::OptimizerConfig& entry, const std::vector<size_t>& group,
                        model::Model& model, int warmup, int steps) {
  if (device != Device::cuda) return 0.0;
  const config::MuonSettings* s = nullptr;
  if (const auto* m = std::get_if<config::MuonSettings>(&entry.settings)) s = m;
  if (const auto* m = std::get_if<config::NewtonMuonSettings>(&entry.settings)) s = m;
  if (!s) return 0.0;
#if SPEEDRUN_HAVE_CUDA
  std::vector<cuda::DeviceMatrix> mats;
  for (size_t i : group) {
    const Tensor p = model.param(i), g = model.grad(i);
    mats.push_back({p.data<float>(), g.data<float>(), p.size(0), p.size(1)});
  }
  cuda::MuonDevice muon(mats, optim::device_newton_schulz(*s), s->nesterov);
  muon.step(static_cast<float>(s->momentum), 0.0, 0.0);
  return cuda::time_device_ms([&] { muon.newton_schulz_only(); }, warmup, std::max(steps, 1));
#else
  return 0.0;
#endif
}

// The layer inputs a capture step hands the optimizer: host f32 on the CPU, device bf16
// on CUDA (the model's activations there).
struct CaptureInputs {
  Tensor model_width, attn_width, hidden;
  std::vector<std::vector<float>> host;
  std::vector<Buffer> device;

  CaptureInputs(Device d, int64_t tokens, int64_t d_model, int64_t attn, int64_t hidden_width, std::mt19937_64& rng) {
    std::vector<float> xm = normal_values(tokens * d_model, rng, 1.0), xa = normal_values(tokens * attn, rng, 1.0),
                       xh = normal_values(tokens * hidden_width, rng, 1.0);
    for (float& v : xh) v = v * v;  // relu^2-like: non-negative, heavier tails
    if (d == Device::cpu) {
      host = {std::move(xm), std::move(xa), std::move(xh)};
      model_width = Tensor::of(host[0].data(), {tokens, d_model});
      attn_width = Tensor::of(host[1].data(), {tokens, attn});
      hidden = Tensor::of(host[2].data(), {tokens, hidden_width});
      return;
    }
#if SPEEDRUN_HAVE_CUDA
    auto upload_bf16 = [&](const std::vector<float>& v, int64_t width) {
      Buffer f32(Device::cuda, v.size() * 4);
      device_copy(f32.data(), v.data(), v.size() * 4);
      Buffer bf(Device::cuda, v.size() * 2);
      cuda::convert(DType::bf16, bf.data(), DType::f32, f32.data(), static_cast<int64_t>(v.size()));
      const Tensor t(bf.data(), DType::bf16, Device::cuda, {tokens, width});
      device.push_back(std::move(bf));
      device.push_back(std::move(f32));  // kept until the end: the conversion is queued, not done
      return t;
    };
    model_width = upload_bf16(xm, d_model);
    attn_width = upload_bf16(xa, attn);
    hidden = upload_bf16(xh, hidden_width);
#endif
  }
};

}  // namespace

void bench_optimizers(const config::RunConfig& cfg, int steps, int warmup, const std::string& json_out,
                      Device device) {
  const auto& m = cfg.model;
  if (cfg.train.threads > 0) omp_set_num_threads(static_cast<int>(cfg.train.threads));
  // Activations for one sequence only: the forward pass is not run.
  const std::unique_ptr<model::Model> model_of_arch = model::make_model(m, device, 1);
  model::Model& model = *model_of_arch;
  model.init_parameters(static_cast<uint64_t>(cfg.train.seed));
  std::mt19937_64 rng(99);
  for (size_t i = 0; i < model.layout().params().size(); ++i) {
    const Tensor g = model.grad(i);
    const std::vector<float> v = normal_values(g.numel(), rng, 1e-3);
    if (device == Device::cpu) std::copy(v.begin(), v.end(), g.data<float>());
    else device_copy(g.ptr, v.data(), v.size() * sizeof(float));
  }
  const auto comm = dist::make_local_communicator();
  auto opts = optim::build_optimizers(cfg.optimizers, model, {comm.get()});
  const auto groups = optim::assign_parameters(cfg.optimizers, model.layout());

  const int64_t tokens = cfg.train.micro_batch_seqs * m.seq_len;
  const int64_t micro_batches = std::max<int64_t>(1, cfg.train.batch_tokens / std::max<int64_t>(1, tokens));
  const int64_t hidden = m.d_model * m.mlp_ratio;
  CaptureInputs inputs(device, tokens, m.d_model, m.n_head * m.head_dim, hidden, rng);

  double ceiling = 0.0;
  nlohmann::json ceiling_json;
  if (device == Device::cuda) {
    const cuda::GemmCeiling c = measure_gemm_ceiling();
    ceiling = c.tflops;
    ceiling_json = gemm_ceiling_json(c);
  }
  if (device == Device::cpu)
    std::printf("optimizer cost: %s, %lld layers, d=%lld, %d threads, CPU; capture = one micro-batch of %lld tokens\n",
                cfg.name.c_str(), (long long)m.n_layer, (long long)m.d_model, omp_get_max_threads(), (long long)tokens);
  else
    std::printf("optimizer cost: %s, %lld layers, d=%lld, CUDA (times from CUDA events); capture = one micro-batch of "
                "%lld bf16 tokens; bf16 GEMM ceiling %.1f TFLOP/s (8192^3 cuBLASLt)\n",
                cfg.name.c_str(), (long long)m.n_layer, (long long)m.d_model, (long long)tokens, ceiling);
  std::printf("%-28s %-12s %10s %12s %12s %14s %14s %10s %10s\n", "entry", "type", "state MB", "step ms",
              "capture ms", "refresh step ms", "refresh/step ms", "NS ms", "NS TFLOP/s");
  nlohmann::json rows = nlohmann::json::array();
  for (size_t e = 0; e < opts.size(); ++e) {
    optim::Optimizer& o = *opts[e];
    const auto& entry = cfg.optimizers[e];
    std::vector<double> ordinary, capture, refresh;
    // Ordinary steps: those without capture.
    for (int64_t s = 0, done = 0; done < warmup + steps; ++s) {
      if (o.capture_sink(s)) continue;
      const double ms = time_once_ms(device, [&] { o.step(s, 1.0); });
      if (done++ >= warmup) ordinary.push_back(ms);
    }
    // Refresh steps: capture every point of every layer once, then step.
    int64_t s = -1, interval = 0;
    for (int r = 0; r < warmup + steps; ++r) {
      const int64_t next = next_capture_step(o, s + 1);
      if (next < 0) break;
      if (s >= 0) interval = next - s;
      s = next;
      model::LayerInputSink* sink = o.capture_sink(s);
      const double c = time_once_ms(device, [&] {
        for (int64_t l = 0; l < m.n_layer; ++l) {
          sink->capture(l, model::CapturePoint::attn_qkv, inputs.model_width);
          sink->capture(l, model::CapturePoint::attn_proj, inputs.attn_width);
          sink->capture(l, model::CapturePoint::mlp_fc, inputs.model_width);
          sink->capture(l, model::CapturePoint::mlp_proj, inputs.hidden);
        }
      });
      const double t = time_once_ms(device, [&] { o.step(s, 1.0); });
      if (r >= warmup) {
        capture.push_back(c);
        refresh.push_back(t);
      }
    }
    std::string patterns;
    for (const auto& p : entry.params) patterns += (patterns.empty() ? "" : ",") + p;
    if (patterns.size() > 28) patterns = patterns.substr(0, 25) + "...";
    const bool captures = !refresh.empty();
    const double step_ms = median(ordinary);
    // The refresh's extra cost (its step beyond an ordinary one, plus the capture of every
    // micro-batch of the step) spread over the steps between refreshes.
    const double amortized = captures && interval > 0 ? (median(refresh) - step_ms +
                                                          median(capture) * static_cast<double>(micro_batches)) /
                                                             static_cast<double>(interval)
                                                      : 0.0;
    const double ns_flops = newton_schulz_flops(entry, groups[e], model);
    // The Newton-Schulz GEMMs' rate: on CUDA timed alone; on the CPU (where they are not
    // separable) their FLOPs over the whole step's time, a lower bound.
    const double ns_ms = newton_schulz_ms(device, entry, groups[e], model, warmup, steps);
    const double ns_time = ns_ms > 0.0 ? ns_ms : step_ms;
    const double ns_tflops = ns_flops > 0.0 && ns_time > 0.0 ? ns_flops / (ns_time * 1e9) : 0.0;
    char capture_ms[32] = "-", refresh_ms[32] = "-", amortized_ms[32] = "-", ns_rate[32] = "-", ns_alone[32] = "-";
    if (ns_ms > 0.0) std::snprintf(ns_alone, sizeof ns_alone, "%.2f", ns_ms);
    if (captures) {
      std::snprintf(capture_ms, sizeof capture_ms, "%.2f", median(capture));
      std::snprintf(refresh_ms, sizeof refresh_ms, "%.2f", median(refresh));
      std::snprintf(amortized_ms, sizeof amortized_ms, "%.3f", amortized);
    }
    if (ns_tflops > 0.0) std::snprintf(ns_rate, sizeof ns_rate, "%.3g", ns_tflops);
    std::printf("%-28s %-12s %10.1f %12.2f %12s %14s %14s %10s %10s\n", patterns.c_str(), o.type(),
                static_cast<double>(o.state_bytes()) / 1e6, step_ms, capture_ms, refresh_ms, amortized_ms, ns_alone,
                ns_rate);
    nlohmann::json row = {{"entry", e}, {"type", o.type()}, {"params", entry.params}, {"step_ms", step_ms}};
    if (captures) {
      row["capture_ms"] = median(capture);
      row["refresh_step_ms"] = median(refresh);
      row["refresh_interval"] = interval;
      row["refresh_amortized_ms_per_step"] = amortized;
    }
    if (ns_flops > 0.0) {
      row["newton_schulz_flops"] = ns_flops;
      if (ns_ms > 0.0) {
        row["newton_schulz_ms"] = ns_ms;
        row["newton_schulz_tflops"] = ns_tflops;
        if (ceiling > 0.0) row["newton_schulz_fraction_of_ceiling"] = ns_tflops / ceiling;
      } else {
        row["newton_schulz_tflops_lower_bound"] = ns_tflops;
      }
    }
    rows.push_back(row);
  }
  if (device == Device::cuda)
    std::printf("NS ms / TFLOP/s: the Newton-Schulz GEMMs alone (CUDA events, median), against the bf16 GEMM "
                "ceiling of %.1f TFLOP/s\n",
                ceiling);
  else
    std::printf("NS TFLOP/s: Newton-Schulz FLOPs over the whole step's time (a lower bound on the GEMMs' rate)\n");
  if (!json_out.empty()) {
    nlohmann::json j = {{"config", cfg.name},          {"commit", SPEEDRUN_GIT_COMMIT},
                        {"device", device_name(device)}, {"threads", omp_get_max_threads()},
                        {"capture_tokens", tokens},     {"micro_batches_per_step", micro_batches},
                        {"optimizers", rows}};
    if (device == Device::cuda) j["gemm_ceiling"] = ceiling_json;
    write_text_file_atomic(json_out, j.dump(2) + "\n");
  }
}

}  // namespace speedrun::cli
