// `speedrun compare`: run planning (hashes, directory names, order), the Track 3
// target rule, run records, and the table/CSV/JSON built from given runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "compare/report.h"
#include "compare/run_plan.h"
#include "compare/run_record.h"
#include "core/error.h"

#include <spdlog/fmt/fmt.h>

namespace cmp = speedrun::compare;
namespace fs = std::filesystem;
using speedrun::train::ValPoint;

namespace {

speedrun::config::RunConfig base_config(const std::string& name) {
  speedrun::config::RunConfig c;
  c.name = name;
  c.data.train_glob = "/data/t_*.bin";
  c.data.val_glob = "/data/v_*.bin";
  c.train.target_val_loss = 5.0;
  return c;
}

cmp::RunResult run(size_t config, int64_t seed, std::vector<ValPoint> val, double target = 5.0) {
  cmp::RunResult r;
  r.config_index = config;
  r.seed = seed;
  r.outcome = "ran";
  r.run_dir = "/out/runs/x" + std::to_string(config) + "-" + std::to_string(seed);
  r.steps = val.back().step;
  r.train_time_s = val.back().train_time_s;
  r.step_avg_ms = 10.0 * (seed + 1);
  r.tokens_per_s = 1000.0;
  r.val = std::move(val);
  r.first_at_target = cmp::first_at_or_below(r.val, target);
  return r;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("speedrun-compare-test-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST(CompareTarget, FirstValidationAtOrBelowWithoutInterpolation) {
  const std::vector<ValPoint> val = {{0, 10.8, 0.0}, {25, 6.1, 2.0}, {50, 5.0, 4.0}, {75, 4.2, 6.0}};
  auto hit = cmp::first_at_or_below(val, 5.0);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->step, 50);  // exactly at the target counts
  EXPECT_DOUBLE_EQ(hit->train_time_s, 4.0);
  EXPECT_EQ(cmp::first_at_or_below(val, 6.0)->step, 50);  // 6.1 is above: no interpolation
  EXPECT_FALSE(cmp::first_at_or_below(val, 4.0));
  EXPECT_FALSE(cmp::first_at_or_below(val, std::nullopt));
}

TEST(ComparePlan, HashFollowsWhatChangesTheRun) {
  auto a = base_config("a");
  const std::string h = cmp::config_hash(a);
  EXPECT_EQ(h.size(), 16u);
  auto b = a;
  b.train.out_dir = "elsewhere";
  EXPECT_EQ(cmp::config_hash(b), h) << "where a run is written does not change it";
  b.train.target_val_loss = 4.0;
  EXPECT_EQ(cmp::config_hash(b), h) << "without stop_at_target the target only labels the curve";
  b.train.stop_at_target = true;
  EXPECT_NE(cmp::config_hash(b), h);
  auto c = a;
  c.train.seed = 1;
  EXPECT_NE(cmp::config_hash(c), h);
  auto d = a;
  d.model.d_model = 64;
  EXPECT_NE(cmp::config_hash(d), h);
}

TEST(ComparePlan, SeedMajorOrderDirectoriesAndSeeds) {
  std::vector<cmp::ComparedConfig> configs(2);
  configs[0].file = "x/a.json";
  configs[0].cfg = base_config("a");
  configs[0].cfg.train.seed = 10;
  configs[1].file = "y/b.json";
  configs[1].cfg = base_config("a");  // same name, other content
  configs[1].cfg.train.steps = 7;
  configs[1].cfg.train.seed = 10;
  cmp::assign_labels(configs);
  EXPECT_EQ(configs[0].label, "a");
  EXPECT_EQ(configs[1].label, "a-2");
  const auto runs = cmp::plan_runs(configs, 3, "/out/runs");
  ASSERT_EQ(runs.size(), 6u);
  EXPECT_EQ(runs[0].config_index, 0u);
  EXPECT_EQ(runs[1].config_index, 1u);
  EXPECT_EQ(runs[2].seed, 11);  // base seed + k
  EXPECT_EQ(runs[5].seed, 12);
  EXPECT_EQ(runs[5].cfg.train.seed, 12);
  EXPECT_EQ(runs[0].run_dir, fs::path("/out/runs") / ("a-seed10-" + runs[0].hash.substr(0, 12)));
  EXPECT_EQ(runs[3].run_name.rfind("a-2-seed11-", 0), 0u);
  EXPECT_NE(runs[0].hash, runs[2].hash);
}

TEST(ComparePlan, SameConfigTwiceIsAnError) {
  std::vector<cmp::ComparedConfig> configs(2);
  configs[0].file = "a.json";
  configs[1].file = "copy-of-a.json";
  configs[0].cfg = configs[1].cfg = base_config("a");
  cmp::assign_labels(configs);
  try {
    cmp::plan_runs(configs, 1, "/out/runs");
    FAIL() << "expected a UserError";
  } catch (const speedrun::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("copy-of-a.json and a.json are the same run config"), std::string::npos)
        << e.what();
  }
}

TEST(CompareRecord, RunDirectoriesThatAreNotOursAreNeverReplaced) {
  TempDir tmp;
  EXPECT_FALSE(cmp::prepare_run_dir(tmp.path / "absent"));
  const fs::path ours = tmp.path / "ours";
  fs::create_directories(ours);
  std::ofstream(ours / "config.json") << "{}";
  EXPECT_TRUE(cmp::prepare_run_dir(ours));  // the trainer replaces it
  const fs::path failed = tmp.path / "failed";
  fs::create_directories(failed);
  std::ofstream(failed / "failed.json") << "{}";
  EXPECT_FALSE(cmp::prepare_run_dir(failed));
  EXPECT_FALSE(fs::exists(failed));
  const fs::path theirs = tmp.path / "theirs";
  fs::create_directories(theirs);
  std::ofstream(theirs / "notes.txt") << "precious";
  EXPECT_THROW(cmp::prepare_run_dir(theirs), speedrun::UserError);
  EXPECT_TRUE(fs::exists(theirs / "notes.txt"));
  // What a killed writer leaves (core/files.h AtomicFile temporaries) is ours too ...
  const fs::path killed = tmp.path / "killed";
  fs::create_directories(killed);
  std::ofstream(killed / ".failed.json.tmp-123-0") << "{";
  std::ofstream(killed / ".config.json.tmp-123-1") << "{";
  EXPECT_FALSE(cmp::prepare_run_dir(killed));
  EXPECT_FALSE(fs::exists(killed));
  // ... but not beside a user's file, nor a name that only looks similar.
  for (const char* other : {"notes.txt", ".config.json.tmp-x-1", "config.json.tmp-123-1"}) {
    const fs::path mixed = tmp.path / "mixed";
    fs::create_directories(mixed);
    std::ofstream(mixed / ".config.json.tmp-123-1") << "{";
    std::ofstream(mixed / other) << "precious";
    EXPECT_THROW(cmp::prepare_run_dir(mixed), speedrun::UserError) << other;
    EXPECT_TRUE(fs::exists(mixed / other)) << other;
    fs::remove_all(mixed);
  }
}

TEST(CompareRecord, FinishedRunIsReadBackOnlyWithItsConfig) {
  TempDir tmp;
  auto cfg = base_config("a");
  cmp::RunResult r;
  r.run_dir = tmp.path / "run";
  r.hash = cmp::config_hash(cfg);
  std::string why;
  EXPECT_FALSE(cmp::read_finished_run(r, why));
  EXPECT_EQ(why, "not run yet");
  fs::create_directories(r.run_dir);
  std::ofstream(r.run_dir / "config.json") << speedrun::config::to_json(cfg).dump(2);
  EXPECT_FALSE(cmp::read_finished_run(r, why));
  EXPECT_EQ(why, "unfinished");
  std::ofstream(r.run_dir / "summary.json")
      << R"({"status": "completed", "steps": 6, "train_time_s": 1.5, "step_avg_ms": 250, "tokens_per_s": 256,
             "final_val_loss": 9.5, "first_at_target": null,
             "val": [{"step": 0, "val_loss": 10.8, "train_time_s": 0}, {"step": 6, "val_loss": 9.5, "train_time_s": 1.5}]})";
  ASSERT_TRUE(cmp::read_finished_run(r, why)) << why;
  EXPECT_EQ(r.steps, 6);
  ASSERT_EQ(r.val.size(), 2u);
  EXPECT_DOUBLE_EQ(r.final_val_loss(), 9.5);
  EXPECT_DOUBLE_EQ(r.step_avg_ms, 250.0);
  cmp::RunResult other = r;
  other.hash = cmp::config_hash(base_config("b"));
  EXPECT_FALSE(cmp::read_finished_run(other, why));
  EXPECT_NE(why.find("differs"), std::string::npos);
}

TEST(CompareReport, TableNumbersFromRuns) {
  std::vector<cmp::ComparedConfig> configs(2);
  configs[0].file = "a.json";
  configs[0].cfg = base_config("a");
  configs[1].file = "b.json";
  configs[1].cfg = base_config("b");
  cmp::assign_labels(configs);
  std::vector<cmp::RunResult> runs = {
      run(0, 0, {{0, 10.0, 0.0}, {10, 4.9, 1.0}, {20, 4.5, 2.0}}),
      run(1, 0, {{0, 10.0, 0.0}, {10, 5.5, 1.5}, {20, 4.8, 3.0}}),
      run(0, 1, {{0, 10.0, 0.0}, {10, 5.1, 1.2}, {20, 4.7, 2.4}}),
      run(1, 1, {{0, 10.0, 0.0}, {10, 5.6, 1.4}, {20, 5.1, 2.8}}),  // never reaches 5.0
  };
  cmp::RunResult failed;
  failed.config_index = 1;
  failed.seed = 2;
  failed.outcome = "failed";
  failed.error = "validation loss is nan at step 10; the run diverged";
  failed.run_dir = "/out/runs/b-seed2";
  runs.push_back(failed);

  const auto stats = cmp::config_stats(configs, runs);
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].final_loss.n, 2);
  EXPECT_NEAR(stats[0].final_loss.mean, 4.6, 1e-12);
  EXPECT_NEAR(stats[0].final_loss.std, std::sqrt(0.02), 1e-12);
  EXPECT_EQ(stats[0].reached, 2);
  EXPECT_NEAR(stats[0].steps_to_target.mean, 15.0, 1e-12);  // steps 10 and 20
  EXPECT_NEAR(stats[0].time_to_target.mean, 1.7, 1e-12);    // 1.0 and 2.4
  EXPECT_NEAR(*stats[0].track3, 0.4 * std::sqrt(2.0), 1e-12);
  EXPECT_FALSE(stats[0].vs_first);
  EXPECT_EQ(stats[1].runs, 3);
  EXPECT_EQ(stats[1].failed, 1);
  EXPECT_EQ(stats[1].reached, 1);
  EXPECT_EQ(stats[1].steps_to_target.n, 1);
  ASSERT_TRUE(stats[1].vs_first);
  cmp::WelchResult w;
  ASSERT_TRUE(cmp::welch_t_test({4.8, 5.1}, {4.5, 4.7}, w));
  EXPECT_DOUBLE_EQ(stats[1].vs_first->p, w.p);

  const std::string md = cmp::markdown_report(stats, configs, runs);
  EXPECT_NE(md.find("| a | 2 | 2/2 (≤ 5) | 15 ± 7 | 1.70 ± 0.99 | 4.6000 ± 0.1414 | 0.5657 pass | (reference) |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| b | 2 (1 failed) | 1/2 (≤ 5) | 20 | 3.00 | 4.9500 ± 0.2121 | 0.0707 pass | " +
                    fmt::format("{:.3g}", w.p) + " |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("- b seed 2 (`/out/runs/b-seed2`): validation loss is nan at step 10; the run diverged"),
            std::string::npos)
      << md;

  const std::string csv = cmp::val_points_csv(configs, runs);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 12);  // header + 4 runs x 3 points
  EXPECT_NE(csv.find("a,1,ran,/out/runs/x0-1,10,5.1,1.2\n"), std::string::npos) << csv;

  const auto j = cmp::results_json(stats, configs, runs);
  EXPECT_EQ(j["configs"][1]["reached"], 1);
  EXPECT_EQ(j["configs"][0]["welch_vs_first"], nullptr);
  EXPECT_DOUBLE_EQ(j["configs"][1]["welch_vs_first"]["p"].get<double>(), w.p);
  EXPECT_EQ(j["runs"].size(), 5u);
  EXPECT_EQ(j["runs"][3]["first_at_target"], nullptr);
  EXPECT_EQ(j["runs"][4]["outcome"], "failed");
  EXPECT_EQ(j["runs"][4]["error"], failed.error);
}

// The model facts of the comparison table for upstream's two 12-layer models. record26: no
// attention in layer 7, so 11 layers of attention, in both the matrix parameters and the
// attention term (which once counted all 12 layers); five (V, d) tables (embed, three value
// embeddings, lm_head) and 64 scalars. Expected values from the layouts' closed forms.
TEST(CompareModelFacts, Track3AndRecord26AtUpstreamSize) {
  speedrun::config::RunConfig t3 = base_config("t3"), r26 = base_config("r26");
  r26.model.arch = "record26";
  const int64_t V = 50304, d = 768, T = 1024, f = 4 * d;
  const cmp::ModelFacts a = cmp::model_facts(t3), b = cmp::model_facts(r26);
  EXPECT_EQ(a.arch, "track3");
  EXPECT_EQ(b.arch, "record26");
  EXPECT_EQ(b.parameters, 5 * V * d + 11 * 4 * d * d + 12 * 2 * d * f + 64);
  EXPECT_EQ(b.matmul_params, 11 * 4 * d * d + 12 * 2 * d * f + d * V);
  EXPECT_DOUBLE_EQ(b.flops_per_token, 6.0 * static_cast<double>(b.matmul_params) + 6.0 * 11 * T * d);
  // track3: every layer has attention (the negative control of the layer-7 rule), biases and gains.
  const int64_t block = 3 * (d * d + d) + (d * d + d) + (f * d + f) + (d * f + d) + 2 * d;
  EXPECT_EQ(a.parameters, V * d + 12 * block + V * d + V + 2 * d);
  EXPECT_EQ(a.matmul_params, 12 * 4 * d * d + 12 * 2 * d * f + d * V);
  EXPECT_DOUBLE_EQ(a.flops_per_token, 6.0 * static_cast<double>(a.matmul_params) + 6.0 * 12 * T * d);
}
