// Record #26's optimizer settings: the schedule with a cooldown floor, the momentum
// warm-up (Muon, Newton-Muon, RMNP) and the AdamW groups, each against upstream's formula
// (KellerJordan/modded-nanogpt train_gpt.py at commit 345b2fb) written out here.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "optim/momentum_warmup.h"
#include "optim/muon.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "test_support.h"

using namespace speedrun;
using nlohmann::json;

namespace {

// Upstream's get_lr (345b2fb):
//   x = step / args.num_iterations
//   if x < 1 - args.cooldown_frac: return 1.0
//   else: w = (1 - x) / args.cooldown_frac; return w * 1.0 + (1 - w) * 0.1
double upstream_get_lr(int64_t step, int64_t iterations, double cooldown_frac, double floor) {
  const double x = static_cast<double>(step) / static_cast<double>(iterations);
  if (x < 1 - cooldown_frac) return 1.0;
  const double w = (1 - x) / cooldown_frac;
  return w * 1.0 + (1 - w) * floor;
}

std::vector<float> random_values(size_t n, std::mt19937_64& rng, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(rng));
  return v;
}

}  // namespace

// Record #26: 1750 steps, cooldown_frac 0.45, floor 0.1. Every step's factor equals
// upstream's get_lr bitwise (the same double arithmetic); stated values at the edges.
TEST(Record26Schedule, CooldownToFloorMatchesUpstream) {
  config::ScheduleConfig s;
  s.cooldown_frac = 0.45;
  s.min_factor = 0.1;
  for (int64_t step = 0; step < 1750; ++step)
    ASSERT_EQ(optim::lr_factor(s, step, 1750), upstream_get_lr(step, 1750, 0.45, 0.1)) << "step " << step;
  EXPECT_EQ(optim::lr_factor(s, 962, 1750), 1.0);  // 962/1750 = 0.5497 < 0.55
  // 963/1750 = 0.550286: w = 0.449714/0.45 = 0.999365, factor = 0.1 + 0.9 w = 0.999429.
  EXPECT_NEAR(optim::lr_factor(s, 963, 1750), 0.1 + 0.9 * (787.0 / 1750 / 0.45), 1e-15);
  EXPECT_LT(optim::lr_factor(s, 963, 1750), 1.0);
  // The last training step 1749: w = (1/1750)/0.45, factor = 0.1 + 0.9 w = 0.1011429.
  EXPECT_NEAR(optim::lr_factor(s, 1749, 1750), 0.1 + 0.9 / 1750 / 0.45, 1e-15);
  // The factor never goes below the floor, and falls monotonically.
  for (int64_t step = 1; step < 1750; ++step) {
    ASSERT_GE(optim::lr_factor(s, step, 1750), 0.1);
    ASSERT_LE(optim::lr_factor(s, step, 1750), optim::lr_factor(s, step - 1, 1750));
  }
}

// Track 3 (floor 0, no warm-up) is the plain cooldown w = (1 - x) / cooldown_frac,
// bitwise: the floor's term adds exactly 0.
TEST(Record26Schedule, Track3ScheduleUnchanged) {
  const config::ScheduleConfig s;  // defaults: cooldown_frac 0.7, min_factor 0, warmup 0
  for (int64_t step = 0; step < 3250; ++step) {
    const double x = static_cast<double>(step) / 3250.0;
    const double want = x < 1 - 0.7 ? 1.0 : (1 - x) / 0.7;
    ASSERT_EQ(optim::lr_factor(s, step, 3250), want) << "step " << step;
  }
}

// Upstream's momentum warm-up, before each step's optimizer step:
//   frac = min(step / 300, 1); group["momentum"] = (1 - frac) * 0.85 + frac * 0.95
TEST(Record26Momentum, WarmupMatchesUpstream) {
  config::MuonSettings s;
  s.momentum = 0.95;
  s.momentum_warmup_start = 0.85;
  s.momentum_warmup_steps = 300;
  for (int64_t step = 0; step < 1750; ++step) {
    const double frac = std::min(static_cast<double>(step) / 300, 1.0);
    ASSERT_EQ(optim::muon_momentum(s, step), (1 - frac) * 0.85 + frac * 0.95) << "step " << step;
  }
  EXPECT_EQ(optim::muon_momentum(s, 0), 0.85);
  EXPECT_NEAR(optim::muon_momentum(s, 150), 0.90, 1e-15);
  EXPECT_NEAR(optim::muon_momentum(s, 299), 0.95 - 0.1 / 300, 1e-15);
  EXPECT_EQ(optim::muon_momentum(s, 300), 0.95);
  EXPECT_EQ(optim::muon_momentum(s, 1000), 0.95);
  // No warm-up (the Track 3 default): the momentum itself at every step.
  const config::MuonSettings plain;
  EXPECT_EQ(optim::muon_momentum(plain, 0), 0.95);
  EXPECT_EQ(optim::warmed_up_momentum(0.95, std::nullopt, 300, 0), 0.95);
  EXPECT_EQ(optim::warmed_up_momentum(0.95, 0.85, 0, 0), 0.95);
}

// RMNP with a warm-up: three steps of the optimizer on a wide and a tall matrix against a
// double-precision RMNP whose momentum follows the warm-up; the same reference with a
// constant momentum is far off (the check sees the warm-up).
TEST(Record26Momentum, RmnpAppliesTheWarmup) {
  const uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  json j = {{"type", "rmnp"}, {"params", {"*"}}, {"lr", 0.01}, {"weight_decay", 0.5},
            {"momentum", 0.95}, {"momentum_warmup_start", 0.5}, {"momentum_warmup_steps", 2}};
  config::OptimizerConfig entry;
  {
    config::Errors errors;
    config::JsonReader r(j, "", errors);
    config::read_optimizer_entry(r, entry);
    r.finish();
    ASSERT_TRUE(errors.empty());
  }
  struct Mat {
    int64_t rows, cols;
    std::vector<float> p, g;
  };
  std::vector<Mat> mats = {{5, 7, {}, {}}, {9, 4, {}, {}}};
  std::vector<optim::ParamRef> refs;
  for (size_t k = 0; k < mats.size(); ++k) {
    Mat& m = mats[k];
    m.p = random_values(static_cast<size_t>(m.rows * m.cols), rng);
    m.g.assign(m.p.size(), 0.0f);
    refs.push_back({"m" + std::to_string(k), Tensor::of(m.p.data(), {m.rows, m.cols}), Tensor::of(m.g.data(), {m.rows, m.cols})});
  }
  auto comm = dist::make_local_communicator();
  auto opt = optim::make_optimizer(entry, refs, {comm.get()});
  // The reference state, in double, for the warm-up (mu = 0.5, 0.725, 0.95) and for a
  // constant 0.95.
  struct Ref {
    std::vector<double> p, buf;
  };
  std::vector<std::vector<Ref>> ref(2);
  for (auto& r : ref)
    for (const Mat& m : mats) r.push_back({std::vector<double>(m.p.begin(), m.p.end()), std::vector<double>(m.p.size(), 0.0)});
  const double lr = 0.01, wd = 0.5;
  for (int64_t step = 0; step < 3; ++step) {
    // The optimizer reads the gradients through the tensors it was given: fill in place.
    for (Mat& m : mats) {
      const std::vector<float> g = random_values(m.g.size(), rng, -2.0, 2.0);
      std::copy(g.begin(), g.end(), m.g.begin());
    }
    opt->step(step, 1.0);
    for (int variant = 0; variant < 2; ++variant) {
      const double mu = variant == 0 ? 0.5 + (0.95 - 0.5) * std::min(1.0, step / 2.0) : 0.95;
      for (size_t k = 0; k < mats.size(); ++k) {
        const Mat& m = mats[k];
        Ref& r = ref[variant][k];
        const double scale = std::sqrt(std::max(1.0, static_cast<double>(m.rows) / static_cast<double>(m.cols)));
        for (int64_t i = 0; i < m.rows; ++i) {
          std::vector<double> u(static_cast<size_t>(m.cols));
          double ss = 0;
          for (int64_t c = 0; c < m.cols; ++c) {
            const size_t at = static_cast<size_t>(i * m.cols + c);
            r.buf[at] = mu * r.buf[at] + m.g[at];
            u[static_cast<size_t>(c)] = m.g[at] + mu * r.buf[at];
            ss += u[static_cast<size_t>(c)] * u[static_cast<size_t>(c)];
          }
          for (int64_t c = 0; c < m.cols; ++c) {
            const size_t at = static_cast<size_t>(i * m.cols + c);
            r.p[at] = r.p[at] * (1 - lr * wd) - lr * scale * u[static_cast<size_t>(c)] / std::sqrt(ss);
          }
        }
      }
    }
  }
  double warm = 0, constant = 0;
  for (size_t k = 0; k < mats.size(); ++k)
    for (size_t i = 0; i < mats[k].p.size(); ++i) {
      warm = std::max(warm, std::fabs(mats[k].p[i] - ref[0][k].p[i]));
      constant = std::max(constant, std::fabs(mats[k].p[i] - ref[1][k].p[i]));
    }
  // f32 arithmetic on values of order 1 over three steps: a few ulps of 2^-24.
  EXPECT_LT(warm, 1e-6);
  EXPECT_GT(constant, 1e-4);
}

// The warm-up keys on an RMNP entry: read, written back, and refused without a length.
TEST(Record26Momentum, RmnpWarmupConfig) {
  json j = {{"data", {{"train_glob", "x"}, {"val_glob", "y"}}},
            {"optimizers",
             {{{"type", "adamw"}, {"params", {"embed.weight", "proj.weight", "*.bias", "*.gains"}}, {"lr", 0.01}},
              {{"type", "rmnp"}, {"params", {"blocks.*.weight"}}, {"lr", 0.005}, {"momentum_warmup_start", 0.85},
               {"momentum_warmup_steps", 300}}}}};
  const auto c = config::run_config_from_json(j, "r.json");
  const auto& s = std::get<config::RmnpSettings>(c.optimizers[1].settings);
  EXPECT_EQ(*s.momentum_warmup_start, 0.85);
  EXPECT_EQ(s.momentum_warmup_steps, 300);
  EXPECT_EQ(config::to_json(c)["optimizers"][1]["momentum_warmup_steps"], 300);
  j["optimizers"][1].erase("momentum_warmup_steps");
  try {
    config::run_config_from_json(j, "r.json");
    ADD_FAILURE() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("optimizers[1].momentum_warmup_steps: must be >= 1"), std::string::npos)
        << e.what();
  }
}

namespace {

// Runs `steps` AdamW steps of `entry_json` on a 1-D parameter of 64 (record #26's
// `scalars`) and a 6 x 5 matrix, with gradients of magnitude ~`grad_scale`; returns the
// parameters after each step and the gradients used.
struct AdamRun {
  std::vector<std::vector<float>> params;  // initial values, updated in place
  std::vector<std::vector<std::vector<float>>> grads;  // [step][param]
};
AdamRun run_adamw(const json& entry_json, int steps, double grad_scale, std::mt19937_64& rng) {
  config::OptimizerConfig entry;
  config::Errors errors;
  config::JsonReader r(entry_json, "", errors);
  config::read_optimizer_entry(r, entry);
  r.finish();
  EXPECT_TRUE(errors.empty());
  AdamRun run;
  const std::vector<std::vector<int64_t>> shapes = {{64}, {6, 5}};
  run.params = {random_values(64, rng), random_values(30, rng)};
  std::vector<std::vector<float>> g = {std::vector<float>(64), std::vector<float>(30)};
  std::vector<optim::ParamRef> refs = {
      {"scalars", Tensor::of(run.params[0].data(), {64}), Tensor::of(g[0].data(), {64})},
      {"m", Tensor::of(run.params[1].data(), {6, 5}), Tensor::of(g[1].data(), {6, 5})}};
  auto comm = dist::make_local_communicator();
  auto opt = optim::make_optimizer(entry, refs, {comm.get()});
  for (int step = 0; step < steps; ++step) {
    for (auto& gi : g) {
      const auto fresh = random_values(gi.size(), rng, -grad_scale, grad_scale);
      std::copy(fresh.begin(), fresh.end(), gi.begin());
    }
    run.grads.push_back(g);
    opt->step(step, 1.0);
  }
  return run;
}

// The reference trajectory in double: torch.optim.AdamW (eps on v_hat) or DistAdam (eps on v).
std::vector<std::vector<double>> adam_reference(const std::vector<std::vector<double>>& start,
                                                const std::vector<std::vector<std::vector<float>>>& grads, double lr,
                                                double b1, double b2, double eps, bool eps_on_v) {
  std::vector<std::vector<double>> p = start, m, v;
  for (const auto& x : p) m.emplace_back(x.size(), 0.0), v.emplace_back(x.size(), 0.0);
  for (size_t step = 0; step < grads.size(); ++step) {
    const double t = static_cast<double>(step + 1), bias1 = 1 - std::pow(b1, t), bias2 = 1 - std::pow(b2, t);
    for (size_t k = 0; k < p.size(); ++k)
      for (size_t i = 0; i < p[k].size(); ++i) {
        const double g = grads[step][k][i];
        m[k][i] = b1 * m[k][i] + (1 - b1) * g;
        v[k][i] = b2 * v[k][i] + (1 - b2) * g * g;
        if (eps_on_v)
          p[k][i] -= lr * (std::sqrt(bias2) / bias1) * m[k][i] / (std::sqrt(v[k][i]) + eps);
        else
          p[k][i] -= lr / bias1 * m[k][i] / (std::sqrt(v[k][i] / bias2) + eps);
      }
  }
  return p;
}

}  // namespace

// Record #26's Adam groups: betas (0.8, 0.95), eps 1e-10, no weight decay, bias-corrected,
// eps on sqrt(v) as DistAdam; a 1-D parameter of 64 (scalars) and a matrix in one group.
// Gradients of ~1e-9 make sqrt(v) comparable to eps, so the two placements differ
// visibly: each placement matches its own double reference and not the other's.
TEST(Record26Adam, EpsPlacementMatchesDistAdamAndTorch) {
  const uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const char* placement : {"v", "v_hat"}) {
    std::mt19937_64 rng(seed);
    const json entry = {{"type", "adamw"}, {"params", {"*"}}, {"lr", 0.04}, {"betas", {0.8, 0.95}},
                        {"eps", 1e-10},   {"eps_placement", placement}};
    std::mt19937_64 rng_copy = rng;
    const AdamRun run = run_adamw(entry, 4, 2e-10, rng);
    // The starting values: the same draws again.
    const std::vector<std::vector<double>> start = {
        [&] { auto v = random_values(64, rng_copy); return std::vector<double>(v.begin(), v.end()); }(),
        [&] { auto v = random_values(30, rng_copy); return std::vector<double>(v.begin(), v.end()); }()};
    const bool on_v = std::string(placement) == "v";
    const auto same = adam_reference(start, run.grads, 0.04, 0.8, 0.95, 1e-10, on_v);
    const auto other = adam_reference(start, run.grads, 0.04, 0.8, 0.95, 1e-10, !on_v);
    double err = 0, gap = 0;
    for (size_t k = 0; k < same.size(); ++k)
      for (size_t i = 0; i < same[k].size(); ++i) {
        err = std::max(err, std::fabs(run.params[k][i] - same[k][i]));
        gap = std::max(gap, std::fabs(run.params[k][i] - other[k][i]));
      }
    // Parameters of order 1 moved by up to 4 x 0.04 in f32: a few ulps of 2^-24.
    EXPECT_LT(err, 1e-6) << placement;
    EXPECT_GT(gap, 1e-3) << placement;  // the placements are told apart
  }
}
