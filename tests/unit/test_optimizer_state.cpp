// Optimizer::export_state / import_state (optim/optimizer.h): for every optimizer type, k
// steps, export, import into fresh optimizers over a copy of the parameters, more steps:
// the parameters equal those of an uninterrupted run bit for bit (CPU, one process; the
// sharded multi-rank state is checked through resumes under mpirun in
// tests/python/test_checkpoint.py). A negative control shows the comparison can fail:
// fresh optimizers without the import diverge.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "model/gpt.h"
#include "optim/capture_fan_out.h"
#include "optim/optimizer.h"

using namespace speedrun;
using nlohmann::json;

namespace {

// A tiny model whose block matrices go to `type` (its extra settings merged) and the rest
// to AdamW, so every test exercises AdamW too.
config::RunConfig config_for(const std::string& type, const json& extra) {
  json matrix = {{"type", type}, {"params", {"blocks.*.weight"}}, {"lr", 0.02}, {"weight_decay", 0.01}};
  matrix.update(extra);
  json j = {{"model", {{"n_layer", 2}, {"d_model", 32}, {"n_head", 2}, {"head_dim", 16}, {"seq_len", 8}, {"vocab_size", 96}, {"padded_vocab_size", 128}}},
            {"data", {{"train_glob", "x"}, {"val_glob", "y"}, {"val_tokens", 8}}},
            {"train", {{"batch_tokens", 32}, {"micro_batch_seqs", 2}}},
            {"optimizers",
             {{{"type", "adamw"}, {"params", {"embed.weight", "proj.weight", "*.bias", "*.gains"}}, {"lr", 0.01},
               {"weight_decay", 0.1}},
              matrix}}};
  return config::run_config_from_json(j, "test.json");
}

struct Trainee {
  std::unique_ptr<dist::Communicator> comm = dist::make_local_communicator();
  model::Gpt model;
  std::vector<std::unique_ptr<optim::Optimizer>> opts;
  explicit Trainee(const config::RunConfig& cfg) : model(cfg.model, Device::cpu, 2) {
    model.init_parameters(11);
    opts = optim::build_optimizers(cfg.optimizers, model, {comm.get()});
  }
  // One training step on tokens drawn from `step` (the same batch for every trainee).
  void step(int64_t step, int64_t vocab) {
    std::mt19937_64 rng(1000 + static_cast<uint64_t>(step));
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
    std::vector<int32_t> in(32), tg(32);
    for (int i = 0; i < 32; ++i) in[i] = tok(rng), tg[i] = tok(rng);
    model.zero_grad();
    optim::CaptureFanOut capture(opts, step);
    for (int k = 0; k < 2; ++k) model.forward_backward(in.data() + 16 * k, tg.data() + 16 * k, 2, capture.sink());
    const double factor = 1.0 - 0.05 * static_cast<double>(step);  // a changing lr factor
    for (auto& o : opts) o->step(step, factor);
    model.weights_changed();
  }
  std::vector<float> params() {
    const int64_t n = model.layout().total_numel();
    return {model.params(), model.params() + n};
  }
};

// Runs the round trip for one config; returns {resumed == uninterrupted, control == uninterrupted}.
std::pair<bool, bool> round_trip(const config::RunConfig& cfg, int64_t k, int64_t total) {
  const int64_t vocab = cfg.model.vocab_size;
  Trainee a(cfg);
  for (int64_t s = 0; s < k; ++s) a.step(s, vocab);
  std::vector<std::vector<optim::StateTensor>> saved;
  for (auto& o : a.opts) saved.push_back(o->export_state());
  // Every exported tensor is finite and the state is not all zeros (the steps changed it).
  bool any_nonzero = false;
  for (const auto& st : saved)
    for (const optim::StateTensor& t : st)
      for (float x : t.f32) {
        EXPECT_TRUE(std::isfinite(x)) << t.name;
        any_nonzero = any_nonzero || x != 0.0f;
      }
  EXPECT_TRUE(any_nonzero);

  Trainee b(cfg), control(cfg);
  const std::vector<float> at_k = a.params();
  std::memcpy(b.model.params(), at_k.data(), at_k.size() * sizeof(float));
  std::memcpy(control.model.params(), at_k.data(), at_k.size() * sizeof(float));
  b.model.weights_changed();
  control.model.weights_changed();
  for (size_t e = 0; e < b.opts.size(); ++e) b.opts[e]->import_state(optim::MemoryStateSource(saved[e]));
  // Re-exporting the imported state gives the saved state back.
  for (size_t e = 0; e < b.opts.size(); ++e) {
    const auto again = b.opts[e]->export_state();
    EXPECT_EQ(again.size(), saved[e].size());
    for (size_t i = 0; i < again.size() && i < saved[e].size(); ++i) {
      EXPECT_EQ(again[i].name, saved[e][i].name);
      EXPECT_EQ(again[i].f32, saved[e][i].f32) << again[i].name;
      EXPECT_EQ(again[i].i64, saved[e][i].i64) << again[i].name;
    }
  }
  for (int64_t s = k; s < total; ++s) {
    a.step(s, vocab);
    b.step(s, vocab);
    control.step(s, vocab);
  }
  const std::vector<float> pa = a.params(), pb = b.params(), pc = control.params();
  return {std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)) == 0,
          std::memcmp(pa.data(), pc.data(), pa.size() * sizeof(float)) == 0};
}

}  // namespace

TEST(OptimizerState, AdamWAndMuonResumeBitwise) {
  const auto [resumed, control] = round_trip(config_for("muon", json::object()), 3, 7);
  EXPECT_TRUE(resumed);
  EXPECT_FALSE(control);  // without the state the run differs: the check is not vacuous
}

TEST(OptimizerState, MuonWithMomentumWarmupResumesBitwise) {
  const auto [resumed, control] =
      round_trip(config_for("muon", {{"momentum_warmup_start", 0.85}, {"momentum_warmup_steps", 5}}), 2, 6);
  EXPECT_TRUE(resumed);
  EXPECT_FALSE(control);
}

TEST(OptimizerState, RmnpResumesBitwise) {
  const auto [resumed, control] = round_trip(config_for("rmnp", json::object()), 3, 7);
  EXPECT_TRUE(resumed);
  EXPECT_FALSE(control);
}

TEST(OptimizerState, NewtonMuonResumesBitwiseAcrossRefreshes) {
  // refresh_every 3: the export at step 4 follows one refresh (EMA, inverse, counters),
  // and the continuation crosses two more.
  const auto cfg = config_for("newton_muon", {{"refresh_every", 3}, {"mlp_proj_blocks", 2}});
  const auto [resumed, control] = round_trip(cfg, 4, 10);
  EXPECT_TRUE(resumed);
  EXPECT_FALSE(control);
  Trainee t(cfg);
  for (int64_t s = 0; s < 4; ++s) t.step(s, cfg.model.vocab_size);
  const auto state = t.opts[1]->export_state();
  bool refreshes = false, covariance = false;
  for (const auto& s : state) {
    if (s.name == "refreshes") refreshes = s.i64 == std::vector<int64_t>{1};
    if (s.name == "blocks.1.mlp_proj.covariance") covariance = s.shape == std::vector<int64_t>{2, 64, 64};
  }
  EXPECT_TRUE(refreshes);
  EXPECT_TRUE(covariance);
}

TEST(OptimizerState, ImportRefusesMissingOrMisshapenState) {
  const auto cfg = config_for("muon", json::object());
  Trainee a(cfg);
  a.step(0, cfg.model.vocab_size);
  auto state = a.opts[1]->export_state();
  Trainee b(cfg);
  state.back().shape = {1, 2};
  EXPECT_THROW(b.opts[1]->import_state(optim::MemoryStateSource(state)), UserError);
  state.pop_back();
  EXPECT_THROW(b.opts[1]->import_state(optim::MemoryStateSource(state)), UserError);
  std::vector<optim::StateTensor> none;
  EXPECT_THROW(b.opts[0]->import_state(optim::MemoryStateSource(none)), UserError);
}
