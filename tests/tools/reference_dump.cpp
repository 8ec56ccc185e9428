// speedrun_reference_dump CONFIG OUTDIR [--steps N] [--data-seed S] [--init-noise SIGMA] [--doc-prob P] [--set K=V]...
//
// Runs the CPU model and optimizers of CONFIG on random tokens and writes what the
// PyTorch reference (tests/python/test_reference_torch.py) recomputes independently:
//   meta.json                 resolved config, parameter names/shapes/groups, losses, lr factors
//   inputs.npy, targets.npy   (steps, micro_steps, B, T) int32
//   logits.npy                capped logits of step 0's first micro-batch (B*T, V)
//   init/<name>.npy           parameters after initialization
//   grads/<name>.npy          gradients of step 0 (summed over its micro-batches, times
//                             model::gradient_scale as the trainer does: record26's mean over sequences)
//   final/<name>.npy          parameters after `steps` optimizer steps
//   trajectory/<s>/<name>.npy parameters after s optimizer steps, 0 < s < steps (the test
//                             evaluates the exact gradient at our own parameters with them)
//   stats/<layer>.<point>.npy X^T X / tokens of each captured layer input, summed over
//                             step 0's micro-batches (the statistic Newton-Muon keeps),
//                             recorded through the model's LayerInputSink
// --init-noise adds N(0, SIGMA^2) to every parameter after the spec's initialization,
// so that no gradient is zero by construction (the zero-initialized proj weights
// otherwise make q/k/v and mlp.fc gradients exactly zero at step 0).
// --doc-prob replaces each random token by model.doc_separator with probability P, so that
// batches hold several documents (record26's attention stays within one).
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "config/run_config.h"
#include "core/error.h"
#include "core/files.h"
#include "core/npy.h"
#include "dist/communicator.h"
#include "model/registry.h"
#include "optim/capture_fan_out.h"
#include "optim/input_statistic.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "train/grad_scaling.h"

namespace fs = std::filesystem;
using namespace speedrun;

namespace {

// Records every captured input's X^T X / tokens, the way Newton-Muon accumulates it.
class StatisticRecorder final : public model::LayerInputSink {
 public:
  void capture(int64_t layer, model::CapturePoint point, const Tensor& input) override {
    const std::string key = std::to_string(layer) + "." + model::capture_point_name(point);
    auto it = stats_.find(key);
    if (it == stats_.end()) it = stats_.emplace(key, optim::InputStatistic(input.size(1), 1, 1.0)).first;
    it->second.accumulate(input);
  }
  void write(const fs::path& dir) const {
    fs::create_directories(dir);
    for (const auto& [key, s] : stats_)
      write_npy(dir / (key + ".npy"), Tensor::of(const_cast<float*>(s.accumulator(0)), {s.width(), s.width()}));
  }

 private:
  std::map<std::string, optim::InputStatistic> stats_;
};

}  // namespace

static void dump_params(model::Model& m, const fs::path& dir, bool grads) {
  fs::create_directories(dir);
  for (size_t i = 0; i < m.layout().params().size(); ++i)
    write_npy(dir / (m.layout().params()[i].name + ".npy"), grads ? m.grad(i) : m.param(i));
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CONFIG OUTDIR [--steps N] [--data-seed S]\n", argv[0]);
    return 2;
  }
  int64_t steps = 5;
  uint64_t data_seed = std::random_device{}();
  double init_noise = 0.0;
  double doc_prob = 0.0;
  std::vector<config::Override> overrides;
  try {
    for (int i = 3; i + 1 < argc; i += 2) {
      const std::string flag = argv[i];
      if (flag == "--steps") steps = std::stoll(argv[i + 1]);
      else if (flag == "--data-seed") data_seed = std::stoull(argv[i + 1]);
      else if (flag == "--init-noise") init_noise = std::stod(argv[i + 1]);
      else if (flag == "--doc-prob") doc_prob = std::stod(argv[i + 1]);
      else if (flag == "--set") overrides.push_back(config::parse_override(argv[i + 1]));
      else throw UserError("unknown flag " + flag);
    }
    const config::RunConfig cfg = config::load_run_config(argv[1], overrides);
    const fs::path out = argv[2];
    fs::create_directories(out);
    const auto& mc = cfg.model;
    const int64_t T = mc.seq_len, B = cfg.train.micro_batch_seqs;
    const int64_t micro_steps = cfg.train.batch_tokens / (B * T);

    const std::unique_ptr<model::Model> model_of_arch = model::make_model(mc, Device::cpu, B);
    model::Model& m = *model_of_arch;
    m.init_parameters(static_cast<uint64_t>(cfg.train.seed));
    if (init_noise > 0) {
      std::mt19937_64 noise_rng(data_seed ^ 0x5DEECE66Dull);
      std::normal_distribution<double> n(0.0, init_noise);
      for (size_t i = 0; i < m.layout().params().size(); ++i) {
        float* p = m.param(i).data<float>();
        for (int64_t k = 0; k < m.param(i).numel(); ++k) p[k] += static_cast<float>(n(noise_rng));
      }
    }
    dump_params(m, out / "init", false);
    const auto comm = dist::make_local_communicator();
    auto opts = optim::build_optimizers(cfg.optimizers, m, {comm.get()});
    nlohmann::json group_json = nlohmann::json::array();
    for (const auto& group : optim::assign_parameters(cfg.optimizers, m.layout())) {
      nlohmann::json names = nlohmann::json::array();
      for (size_t i : group) names.push_back(m.layout().params()[i].name);
      group_json.push_back(names);
    }

    // Random tokens, as upstream's loader cuts them: each step's batch is a contiguous
    // run of batch_tokens + 1 tokens.
    std::mt19937_64 rng(data_seed);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(mc.vocab_size - 1));
    const int64_t per_step = micro_steps * B * T;
    std::vector<int32_t> inputs(static_cast<size_t>(steps * per_step)), targets(inputs.size());
    for (int64_t s = 0; s < steps; ++s) {
      std::vector<int32_t> run(static_cast<size_t>(per_step + 1));
      for (auto& x : run) x = tok(rng);
      if (doc_prob > 0) {
        std::bernoulli_distribution separator(doc_prob);
        for (auto& x : run)
          if (separator(rng)) x = static_cast<int32_t>(mc.doc_separator);
      }
      for (int64_t i = 0; i < per_step; ++i) {
        inputs[s * per_step + i] = run[i];
        targets[s * per_step + i] = run[i + 1];
      }
    }
    write_npy(out / "inputs.npy", Tensor::of(inputs.data(), {steps, micro_steps, B, T}));
    write_npy(out / "targets.npy", Tensor::of(targets.data(), {steps, micro_steps, B, T}));

    std::vector<float> logits(static_cast<size_t>(B * T * mc.padded_vocab_size));
    m.forward_logits(inputs.data(), B, logits.data(), {0, cfg.train.steps});
    write_npy(out / "logits.npy", Tensor::of(logits.data(), {B * T, mc.padded_vocab_size}));

    double meta_scale = 1.0;
    nlohmann::json losses = nlohmann::json::array(), factors = nlohmann::json::array(), metrics = nlohmann::json::array();
    StatisticRecorder recorder;
    train::GradientScaler scaler(m, model::gradient_scale(mc, cfg.train.batch_tokens), nullptr);
    meta_scale = scaler.scale();
    for (int64_t s = 0; s < steps; ++s) {
      m.zero_grad();
      double loss = 0.0;
      optim::CaptureFanOut capture(opts, s);
      if (s == 0) capture.add(&recorder);
      for (int64_t k = 0; k < micro_steps; ++k) {
        const int64_t off = s * per_step + k * B * T;
        loss += m.forward_backward(inputs.data() + off, targets.data() + off, B, capture.sink(), {s, cfg.train.steps});
      }
      scaler.finish();
      if (s == 0) recorder.write(out / "stats");
      losses.push_back(loss);
      if (s == 0) dump_params(m, out / "grads", true);
      const double f = optim::lr_factor(cfg.schedule, s, cfg.train.steps);
      factors.push_back(f);
      for (auto& o : opts) o->step(s, f);
      if (s + 1 < steps) dump_params(m, out / "trajectory" / std::to_string(s + 1), false);
      nlohmann::json step_metrics = nlohmann::json::array();
      for (auto& o : opts) step_metrics.push_back(o->metrics());
      metrics.push_back(step_metrics);
    }
    dump_params(m, out / "final", false);

    nlohmann::json meta;
    meta["config"] = config::to_json(cfg);
    meta["steps"] = steps;
    meta["micro_steps"] = micro_steps;
    meta["gradient_scale"] = meta_scale;
    meta["data_seed"] = data_seed;
    meta["losses"] = losses;
    meta["lr_factors"] = factors;
    meta["groups"] = group_json;
    meta["optimizer_metrics"] = metrics;
    nlohmann::json params = nlohmann::json::array();
    for (const auto& p : m.layout().params()) params.push_back({{"name", p.name}, {"shape", p.shape}});
    meta["params"] = params;
    write_text_file_atomic(out / "meta.json", meta.dump(2));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
