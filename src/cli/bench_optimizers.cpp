#include "cli/bench_optimizers.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "build_info.h"
#include "core/error.h"
#include "core/files.h"
#include "dist/communicator.h"
#include "model/gpt.h"
#include "optim/optimizer.h"

namespace speedrun::cli {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }
double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void fill_normal(const Tensor& t, std::mt19937_64& rng, double stddev) {
  std::normal_distribution<float> n(0.0f, static_cast<float>(stddev));
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = n(rng);
}

// The first step at or after `from` on which the optimizer captures, or -1.
int64_t next_capture_step(optim::Optimizer& o, int64_t from) {
  for (int64_t s = from; s < from + 100000; ++s)
    if (o.capture_sink(s)) return s;
  return -1;
}

}  // namespace

void bench_optimizers(const config::RunConfig& cfg, int steps, int warmup, const std::string& json_out) {
  const auto& m = cfg.model;
  if (cfg.train.threads > 0) omp_set_num_threads(static_cast<int>(cfg.train.threads));
  // Activations for one sequence only: the forward pass is not run.
  model::Gpt model(m, Device::cpu, 1);
  model.init_parameters(static_cast<uint64_t>(cfg.train.seed));
  std::mt19937_64 rng(99);
  for (size_t i = 0; i < model.layout().params().size(); ++i) fill_normal(model.grad(i), rng, 1e-3);
  const auto comm = dist::make_local_communicator();
  auto opts = optim::build_optimizers(cfg.optimizers, model, {comm.get()});

  const int64_t tokens = cfg.train.micro_batch_seqs * m.seq_len;
  const int64_t hidden = m.d_model * m.mlp_ratio;
  std::vector<float> x_model(static_cast<size_t>(tokens * m.d_model)), x_hidden(static_cast<size_t>(tokens * hidden));
  {
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (auto& v : x_model) v = n(rng);
    for (auto& v : x_hidden) v = n(rng) * n(rng);  // relu^2-like: heavier tails
  }

  std::printf("optimizer cost: %s, %lld layers, d=%lld, %d threads, CPU; capture = one micro-batch of %lld tokens\n",
              cfg.name.c_str(), (long long)m.n_layer, (long long)m.d_model, omp_get_max_threads(),
              (long long)tokens);
  std::printf("%-28s %-12s %10s %14s %14s %16s\n", "entry", "type", "state MB", "step ms", "capture ms",
              "refresh step ms");
  nlohmann::json rows = nlohmann::json::array();
  for (size_t e = 0; e < opts.size(); ++e) {
    optim::Optimizer& o = *opts[e];
    const auto& entry = cfg.optimizers[e];
    std::vector<double> ordinary, capture, refresh;
    // Ordinary steps: those without capture.
    for (int64_t s = 0, done = 0; done < warmup + steps; ++s) {
      if (o.capture_sink(s)) continue;
      const auto t0 = Clock::now();
      o.step(s, 1.0);
      if (done++ >= warmup) ordinary.push_back(ms_since(t0));
    }
    // Refresh steps: capture every point of every layer once, then step.
    int64_t s = -1;
    for (int r = 0; r < warmup + steps; ++r) {
      s = next_capture_step(o, s + 1);
      if (s < 0) break;
      model::LayerInputSink* sink = o.capture_sink(s);
      const auto c0 = Clock::now();
      for (int64_t l = 0; l < m.n_layer; ++l) {
        const Tensor xm = Tensor::of(x_model.data(), {tokens, m.d_model});
        sink->capture(l, model::CapturePoint::attn_qkv, xm);
        sink->capture(l, model::CapturePoint::attn_proj, Tensor::of(x_model.data(), {tokens, m.n_head * m.head_dim}));
        sink->capture(l, model::CapturePoint::mlp_fc, xm);
        sink->capture(l, model::CapturePoint::mlp_proj, Tensor::of(x_hidden.data(), {tokens, hidden}));
      }
      const double c = ms_since(c0);
      const auto t0 = Clock::now();
      o.step(s, 1.0);
      if (r >= warmup) {
        capture.push_back(c);
        refresh.push_back(ms_since(t0));
      }
    }
    std::string patterns;
    for (const auto& p : entry.params) patterns += (patterns.empty() ? "" : ",") + p;
    if (patterns.size() > 28) patterns = patterns.substr(0, 25) + "...";
    const bool captures = !refresh.empty();
    char capture_ms[32] = "-", refresh_ms[32] = "-";
    if (captures) {
      std::snprintf(capture_ms, sizeof capture_ms, "%.2f", median(capture));
      std::snprintf(refresh_ms, sizeof refresh_ms, "%.2f", median(refresh));
    }
    std::printf("%-28s %-12s %10.1f %14.2f %14s %16s\n", patterns.c_str(), o.type(),
                static_cast<double>(o.state_bytes()) / 1e6, median(ordinary), capture_ms, refresh_ms);
    nlohmann::json row = {{"entry", e}, {"type", o.type()}, {"params", entry.params}, {"step_ms", median(ordinary)}};
    if (captures) {
      row["capture_ms"] = median(capture);
      row["refresh_step_ms"] = median(refresh);
    }
    rows.push_back(row);
  }
  if (!json_out.empty()) {
    const nlohmann::json j = {{"config", cfg.name}, {"commit", SPEEDRUN_GIT_COMMIT}, {"threads", omp_get_max_threads()},
                              {"capture_tokens", tokens}, {"optimizers", rows}};
    write_text_file_atomic(json_out, j.dump(2) + "\n");
  }
}

}  // namespace speedrun::cli
