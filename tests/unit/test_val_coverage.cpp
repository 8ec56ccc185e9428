// compare's count of a run's validations against the trainer's own rule, step by step;
// the CUDA head widths' single list.
#include <gtest/gtest.h>

#include <random>

#include "compare/val_coverage.h"
#include "core/error.h"
#include "kernels/ops/ops_cuda.h"
#include "model/device_support.h"
#include "test_support.h"

namespace {

// The trainer's loop (train/trainer.cpp), verbatim in its condition: validations after step 0.
int64_t simulated(const speedrun::config::TrainConfig& t) {
  int64_t n = 0;
  for (int64_t step = 1; step <= t.steps; ++step) {
    const int64_t val_freq =
        static_cast<double>(step) / static_cast<double>(t.steps) < 1.0 - t.val_final_frac ? t.val_every
                                                                                          : t.val_every_final;
    if (step == t.steps || step % val_freq == 0) ++n;
  }
  return n;
}

TEST(ValCoverage, CountMatchesTheTrainersScheduleOnRandomSettings) {
  const uint64_t seed = speedrun::test::test_seed();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("SPEEDRUN_TEST_SEED=" + std::to_string(seed));
  for (int i = 0; i < 3000; ++i) {
    speedrun::config::TrainConfig t;
    t.steps = std::uniform_int_distribution<int64_t>(1, 400)(rng);
    t.val_every = std::uniform_int_distribution<int64_t>(1, 150)(rng);
    t.val_every_final = std::uniform_int_distribution<int64_t>(1, 60)(rng);
    t.val_final_frac = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    if (i % 10 == 0) t.val_final_frac = std::uniform_int_distribution<int>(0, 4)(rng) / 4.0;  // exact boundaries
    ASSERT_EQ(speedrun::compare::validations_after_start(t), simulated(t))
        << "steps " << t.steps << " val_every " << t.val_every << " val_every_final " << t.val_every_final
        << " val_final_frac " << t.val_final_frac;
  }
}

TEST(ValCoverage, WarnsWithTheSettingToChange) {
  speedrun::config::TrainConfig t;  // Track 3: 3250 steps, every 125, every 25 in the last 10 %
  EXPECT_EQ(speedrun::compare::too_few_validations_warning("track3", t), "");
  t.steps = 100;
  t.val_every = 125;
  t.val_every_final = 125;
  const std::string w = speedrun::compare::too_few_validations_warning("short", t);
  EXPECT_NE(w.find("short: only 1 validation(s) after step 0"), std::string::npos) << w;
  EXPECT_NE(w.find("--set train.val_every=20"), std::string::npos) << w;
  t.val_every = t.val_every_final = 34;  // steps 34, 68 and 100
  EXPECT_EQ(speedrun::compare::too_few_validations_warning("enough", t), "");
  t.val_every = t.val_every_final = 50;  // 50 and 100 only
  EXPECT_NE(speedrun::compare::too_few_validations_warning("two", t), "");
}

}  // namespace

// The CUDA head widths: one list, and every message derived from it (issue 19: the
// trainer's message hard-coded "64 and 128").
namespace {

TEST(CudaHeadDims, OneListDrivesTheCheckAndTheMessage) {
  std::string listed;
  for (const int64_t d : speedrun::cuda::kAttentionHeadDims) {
    EXPECT_TRUE(speedrun::cuda::attention_supports_head_dim(d));
    listed += std::to_string(d) + " ";
    speedrun::config::ModelConfig m;
    m.head_dim = d;
    EXPECT_NO_THROW(speedrun::model::check_model_runs_on(m, speedrun::Device::cuda));
  }
  const std::string text = speedrun::cuda::attention_head_dims_text();
  for (const int64_t d : speedrun::cuda::kAttentionHeadDims) EXPECT_NE(text.find(std::to_string(d)), std::string::npos);
  speedrun::config::ModelConfig m;
  m.head_dim = 96;  // a multiple of 4 the CPU runs, not in the list
  EXPECT_FALSE(speedrun::cuda::attention_supports_head_dim(96));
  EXPECT_NO_THROW(speedrun::model::check_model_runs_on(m, speedrun::Device::cpu));
  try {
    speedrun::model::check_model_runs_on(m, speedrun::Device::cuda);
    FAIL() << "head_dim 96 accepted on CUDA (list: " << listed << ")";
  } catch (const speedrun::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("model.head_dim = 96: the CUDA attention kernels support head_dim " + text),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
