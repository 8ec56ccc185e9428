// Newton-Muon's input statistics (capture, EMA, ridge, Cholesky inverse, fallback),
// its capture through the model, and its and RMNP's config handling. The optimizers'
// trajectories are compared with PyTorch in tests/python/test_reference_torch.py.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "model/gpt.h"
#include "optim/capture_fan_out.h"
#include "optim/input_statistic.h"
#include "optim/newton_muon.h"
#include "optim/optimizer.h"

using namespace speedrun;
using nlohmann::json;

namespace {

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint64_t seed, double shift = 0.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<float> m(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) m[static_cast<size_t>(i)] = static_cast<float>(n(rng) + shift * (i % cols));
  return m;
}

// X_b^T X_b / tokens of column block b, in double.
std::vector<double> second_moment(const std::vector<float>& x, int64_t tokens, int64_t width, int64_t b, int64_t n) {
  std::vector<double> a(static_cast<size_t>(n * n), 0.0);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        a[static_cast<size_t>(i * n + j)] +=
            static_cast<double>(x[static_cast<size_t>(t * width + b * n + i)]) * x[static_cast<size_t>(t * width + b * n + j)];
  for (double& v : a) v /= static_cast<double>(tokens);
  return a;
}

double max_abs_diff(const float* got, const std::vector<double>& want) {
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
  return worst;
}

}  // namespace

TEST(NewtonMuonStatistic, AccumulatesSecondMomentPerBlockAndCounts) {
  const int64_t n = 12, blocks = 3, width = n * blocks;
  optim::InputStatistic s(n, blocks, 0.001);
  const auto x1 = random_matrix(50, width, 1, 0.1), x2 = random_matrix(70, width, 2);
  s.accumulate(Tensor::of(const_cast<float*>(x1.data()), {50, width}));
  s.accumulate(Tensor::of(const_cast<float*>(x2.data()), {70, width}));
  EXPECT_EQ(s.count(), 2.0);
  for (int64_t b = 0; b < blocks; ++b) {
    auto want = second_moment(x1, 50, width, b, n);
    const auto w2 = second_moment(x2, 70, width, b, n);
    for (size_t i = 0; i < want.size(); ++i) want[i] += w2[i];
    // fp32 sums of 50..70 products of unit-scale values: ~1e-6 relative to entries of ~1..10.
    EXPECT_LT(max_abs_diff(s.accumulator(b), want), 2e-5) << "block " << b;
  }
  EXPECT_THROW(s.accumulate(Tensor::of(const_cast<float*>(x1.data()), {50, width - 1})), std::invalid_argument);
}

TEST(NewtonMuonStatistic, RefreshIsEmaRidgeAndCholeskyInverse) {
  const int64_t n = 16;
  optim::InputStatistic s(n, 1, 0.001);
  const auto x = random_matrix(200, n, 3, 0.05);
  s.accumulate(Tensor::of(const_cast<float*>(x.data()), {100, n}));
  s.accumulate(Tensor::of(const_cast<float*>(x.data()) + 100 * n, {100, n}));
  auto k = second_moment(x, 100, n, 0, n);
  const auto k2 = second_moment(std::vector<float>(x.begin() + 100 * n, x.end()), 100, n, 0, n);
  for (size_t i = 0; i < k.size(); ++i) k[i] = (k[i] + k2[i]) / 2.0;  // A / count
  const double beta = 0.3, ridge = 0.2, eps = 1e-8;
  ASSERT_EQ(s.refresh(beta, ridge, eps), 0);
  EXPECT_TRUE(s.has_inverse());
  EXPECT_EQ(s.count(), 0.0);
  std::vector<double> c(static_cast<size_t>(n * n));
  double trace = 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double c0 = i == j ? 0.001 : 0.0;
      c[static_cast<size_t>(i * n + j)] = c0 + beta * (k[static_cast<size_t>(i * n + j)] - c0);
      if (i == j) trace += c[static_cast<size_t>(i * n + j)];
    }
  EXPECT_LT(max_abs_diff(s.covariance(0), c), 1e-5);
  // (C + r I) P = I, in double from the float P.
  const double r = ridge * trace / n + eps;
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double v = 0.0;
      for (int64_t m = 0; m < n; ++m)
        v += (c[static_cast<size_t>(i * n + m)] + (i == m ? r : 0.0)) * s.inverse(0)[m * n + j];
      worst = std::max(worst, std::fabs(v - (i == j ? 1.0 : 0.0)));
    }
  // cond(C + r I) <= (lambda_max + r) / r, about 30 here: fp32 Cholesky gives ~1e-5.
  EXPECT_LT(worst, 1e-4);
  // The inverse is symmetric (both triangles filled).
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(s.inverse(0)[i * n + j], s.inverse(0)[j * n + i]);
}

TEST(NewtonMuonStatistic, FailedCholeskyGivesIdentityAndEmptyStatisticKeepsC) {
  const int64_t n = 8;
  optim::InputStatistic s(n, 2, 0.001);
  // No capture: count 0, the EMA is skipped and C stays 0.001 I.
  ASSERT_EQ(s.refresh(0.05, 0.2, 1e-8), 0);
  for (int64_t b = 0; b < 2; ++b) {
    EXPECT_FLOAT_EQ(s.covariance(b)[0], 0.001f);
    EXPECT_NEAR(s.inverse(b)[0], 1.0 / (0.001 * 1.2 + 1e-8), 1e-2);
  }
  const auto x = random_matrix(40, 2 * n, 4);
  s.accumulate(Tensor::of(const_cast<float*>(x.data()), {40, 2 * n}));
  // A negative ridge below -1 makes C + r I indefinite: both blocks fall back to I.
  EXPECT_EQ(s.refresh(0.05, -1.5, 0.0), 2);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) EXPECT_EQ(s.inverse(b)[i * n + j], i == j ? 1.0f : 0.0f);
}

TEST(NewtonMuonStatistic, PreconditionMultipliesEachColumnBlock) {
  const int64_t n = 6, blocks = 2, width = n * blocks, rows = 5;
  optim::InputStatistic s(n, blocks, 0.001);
  const auto x = random_matrix(30, width, 5);
  s.accumulate(Tensor::of(const_cast<float*>(x.data()), {30, width}));
  s.refresh(1.0, 0.2, 1e-8);
  const auto g = random_matrix(rows, width, 6);
  std::vector<float> out(g.size());
  s.precondition(g.data(), out.data(), rows);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t j = 0; j < n; ++j) {
        double v = 0.0;
        for (int64_t m = 0; m < n; ++m) v += static_cast<double>(g[i * width + b * n + m]) * s.inverse(b)[m * n + j];
        EXPECT_NEAR(out[i * width + b * n + j], v, 1e-4 * (1.0 + std::fabs(v)));
      }
}

TEST(NewtonMuonCapture, NameToCapturePoint) {
  int64_t layer = -1;
  model::CapturePoint p{};
  ASSERT_TRUE(optim::capture_point_of("blocks.11.attn.v.weight", layer, p));
  EXPECT_EQ(layer, 11);
  EXPECT_EQ(p, model::CapturePoint::attn_qkv);
  ASSERT_TRUE(optim::capture_point_of("blocks.0.mlp.proj.weight", layer, p));
  EXPECT_EQ(p, model::CapturePoint::mlp_proj);
  EXPECT_FALSE(optim::capture_point_of("blocks.0.attn.q.bias", layer, p));
  EXPECT_FALSE(optim::capture_point_of("embed.weight", layer, p));
  EXPECT_FALSE(optim::capture_point_of("blocks.x.attn.q.weight", layer, p));
}

namespace {

config::RunConfig tiny_newton_muon_config(const json& nm_extra) {
  json nm = {{"type", "newton_muon"}, {"params", {"blocks.*.weight"}}, {"lr", 0.02}, {"refresh_every", 3}};
  if (nm_extra.is_object()) nm.update(nm_extra);
  json j = {{"model", {{"n_layer", 2}, {"d_model", 32}, {"n_head", 2}, {"head_dim", 16}, {"seq_len", 8}}},
            {"data", {{"train_glob", "x"}, {"val_glob", "y"}, {"val_tokens", 8}}},
            {"train", {{"batch_tokens", 32}, {"micro_batch_seqs", 2}}},
            {"optimizers",
             {{{"type", "adamw"}, {"params", {"embed.weight", "proj.weight", "*.bias", "*.gains"}}, {"lr", 0.01}},
              nm}}};
  return config::run_config_from_json(j, "test.json");
}

// Records every input the model hands its sink.
struct Recorder final : model::LayerInputSink {
  std::map<std::pair<int64_t, model::CapturePoint>, std::vector<int64_t>> shapes;
  void capture(int64_t layer, model::CapturePoint point, const Tensor& input) override {
    shapes[{layer, point}] = {input.size(0), input.size(1)};
  }
};

}  // namespace

TEST(NewtonMuonCapture, CapturesOnlyOnRefreshStepsAtEveryPoint) {
  const config::RunConfig cfg = tiny_newton_muon_config(json::object());
  model::Gpt m(cfg.model, Device::cpu, 2);
  m.init_parameters(7);
  const auto comm = dist::make_local_communicator();
  auto opts = optim::build_optimizers(cfg.optimizers, m, {comm.get()});
  ASSERT_EQ(opts[1]->type(), std::string("newton_muon"));
  for (int64_t step = 0; step < 7; ++step)
    EXPECT_EQ(opts[1]->capture_sink(step) != nullptr, (step + 1) % 3 == 0) << "step " << step;
  EXPECT_EQ(opts[0]->capture_sink(2), nullptr);

  std::vector<int32_t> tokens(16), targets(16);
  for (int i = 0; i < 16; ++i) tokens[i] = (i * 977) % 50257, targets[i] = (i * 131) % 50257;
  Recorder rec;
  optim::CaptureFanOut fan(opts, 2);
  fan.add(&rec);
  m.forward_backward(tokens.data(), targets.data(), 2, fan.sink());
  using model::CapturePoint;
  for (int64_t l = 0; l < 2; ++l) {
    EXPECT_EQ(rec.shapes[std::make_pair(l, CapturePoint::attn_qkv)], (std::vector<int64_t>{16, 32}));
    EXPECT_EQ(rec.shapes[std::make_pair(l, CapturePoint::attn_proj)], (std::vector<int64_t>{16, 32}));
    EXPECT_EQ(rec.shapes[std::make_pair(l, CapturePoint::mlp_fc)], (std::vector<int64_t>{16, 32}));
    EXPECT_EQ(rec.shapes[std::make_pair(l, CapturePoint::mlp_proj)], (std::vector<int64_t>{16, 128}));
  }
  // A step: the refresh runs (metrics count it) and every parameter stays finite.
  opts[1]->step(2, 1.0);
  EXPECT_EQ(opts[1]->metrics()["refreshes"], 1);
  EXPECT_EQ(opts[1]->metrics()["cholesky_failures"], 0);
}

TEST(NewtonMuonConfig, SettingsAndErrors) {
  const config::RunConfig cfg = tiny_newton_muon_config({{"ridge", 0.1}, {"precondition", {"mlp_fc"}}});
  const auto& s = std::get<config::NewtonMuonSettings>(cfg.optimizers[1].settings);
  EXPECT_EQ(s.refresh_every, 3);
  EXPECT_DOUBLE_EQ(s.ridge, 0.1);
  EXPECT_DOUBLE_EQ(s.ema_beta, 0.05);
  EXPECT_EQ(s.mlp_proj_blocks, 4);
  EXPECT_DOUBLE_EQ(s.momentum, 0.95);  // the Muon settings come along
  EXPECT_EQ(s.ns_preset, "cubic");

  auto error_of = [](const json& extra) -> std::string {
    try {
      tiny_newton_muon_config(extra);
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of({{"refresh_every", 0}}).find("optimizers[1].refresh_every"), std::string::npos);
  EXPECT_NE(error_of({{"precondition", {"mlp_fcc"}}}).find("optimizers[1].precondition"), std::string::npos);
  EXPECT_NE(error_of({{"ema_beta", 1.5}}).find("optimizers[1].ema_beta"), std::string::npos);
  EXPECT_NE(error_of({{"bogus", 1}}).find("bogus"), std::string::npos);

  // Parameters without a captured input, and a block count that does not divide mlp.proj.
  model::Gpt m(cfg.model, Device::cpu, 2);
  const auto comm = dist::make_local_communicator();
  auto build_error = [&](std::vector<std::string> nm_params, const json& extra) -> std::string {
    config::RunConfig c = tiny_newton_muon_config(extra);
    c.optimizers[1].params = nm_params;
    c.optimizers[0].params = {"*.bias", "*.gains"};
    if (nm_params.size() == 1) c.optimizers[0].params.insert(c.optimizers[0].params.end(), {"embed.weight", "proj.weight"});
    try {
      optim::build_optimizers(c.optimizers, m, {comm.get()});
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  };
  const std::string no_input = build_error({"blocks.*.weight", "embed.weight", "proj.weight"}, json::object());
  EXPECT_NE(no_input.find("optimizers[1]"), std::string::npos) << no_input;
  EXPECT_NE(no_input.find("'embed.weight', whose input is not captured"), std::string::npos) << no_input;
  // The config refuses such a block count first, naming the key; the optimizer's own
  // check guards configs built in code.
  const std::string refused = error_of({{"mlp_proj_blocks", 3}});
  EXPECT_NE(refused.find("optimizers[1].mlp_proj_blocks: must divide the MLP width model.mlp_ratio * model.d_model = "
                         "128, got 3"),
            std::string::npos)
      << refused;
  config::RunConfig c = tiny_newton_muon_config(json::object());
  std::get<config::NewtonMuonSettings>(c.optimizers[1].settings).mlp_proj_blocks = 3;
  std::string blocks;
  try {
    optim::build_optimizers(c.optimizers, m, {comm.get()});
  } catch (const UserError& e) {
    blocks = e.what();
  }
  EXPECT_NE(blocks.find("mlp_proj_blocks = 3 does not divide the 128 input columns"), std::string::npos) << blocks;
}

TEST(RmnpConfig, SettingsAndErrors) {
  json j = {{"data", {{"train_glob", "x"}, {"val_glob", "y"}}},
            {"optimizers",
             {{{"type", "adamw"}, {"params", {"embed.weight", "proj.weight", "*.bias", "*.gains"}}, {"lr", 0.01}},
              {{"type", "rmnp"}, {"params", {"blocks.*.weight"}}, {"lr", 0.005}, {"nesterov", false}}}}};
  const auto c = config::run_config_from_json(j, "r.json");
  const auto& s = std::get<config::RmnpSettings>(c.optimizers[1].settings);
  EXPECT_FALSE(s.nesterov);
  EXPECT_DOUBLE_EQ(s.momentum, 0.95);
  EXPECT_DOUBLE_EQ(s.eps, 1e-12);
  j["optimizers"][1]["ns_preset"] = "cubic";  // a Muon setting is unknown to RMNP
  try {
    config::run_config_from_json(j, "r.json");
    ADD_FAILURE() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("optimizers[1].ns_preset"), std::string::npos) << e.what();
  }
}
