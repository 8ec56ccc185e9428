// What a run writes for scripts and people: the validation line in the upstream
// script's format, JSON without NaN or Infinity (null instead), the run log and the
// logger's tee, and the error lines main() prints. (The progress lines' plain mode is
// checked through pipes and mpirun in tests/python: test_cli.py, test_mpi.py.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "compare/run_record.h"
#include "core/error.h"
#include "core/log.h"
#include "train/run_log.h"
#include "train/trainer.h"
#include "train/val_line.h"

namespace speedrun::test {
namespace {

TEST(ValLine, Track3IsTrainGptSimplesFormat) {
  // records/track_3_optimization/train_gpt_simple.py: val_loss to 5 decimals, the
  // training time in seconds to 3, the step average since the previous validation in ms.
  const train::ValLineFormat f = train::val_line_format("track3");
  EXPECT_EQ(f({125, 3250, 4.586124, 19.2744, 154.1934}),
            "step:125/3250 val_loss:4.58612 train_time:19.274s step_avg:154.19ms");
  // Step 0: no step yet, the average is NaN and prints as Python prints it.
  EXPECT_EQ(f({0, 3250, 10.825839, 0.0, std::nan("")}),
            "step:0/3250 val_loss:10.82584 train_time:0.000s step_avg:nanms");
  EXPECT_THROW(train::val_line_format("gpt3"), std::invalid_argument);
}

TEST(ValLine, Record26IsTrainGptsFormat) {
  // train_gpt.py (record #26): val_loss to 4 decimals, the training time in whole ms, the
  // step average over the whole run (training time / max(step, 1)).
  const train::ValLineFormat f = train::val_line_format("record26");
  EXPECT_EQ(f({125, 1750, 4.586124, 12.3456, 99.0}), "step:125/1750 val_loss:4.5861 train_time:12346ms step_avg:98.76ms");
  EXPECT_EQ(f({0, 1750, 10.825839, 0.0, std::nan("")}), "step:0/1750 val_loss:10.8258 train_time:0ms step_avg:0.00ms");
}

// nlohmann::json (3.11) writes NaN and +-Infinity as null: every JSON file the product
// writes goes through it (metrics.jsonl, summary.json, results.json, bench JSON), so
// none can hold a bare NaN, which JSON cannot represent. Pinned here so that a library
// change shows.
TEST(JsonOutput, NonFiniteNumbersAreNull) {
  const double inf = std::numeric_limits<double>::infinity();
  const nlohmann::json j = {{"nan", std::nan("")}, {"inf", inf}, {"minus_inf", -inf}, {"x", 1.5},
                            {"f32", std::numeric_limits<float>::quiet_NaN()}};
  EXPECT_EQ(j.dump(), R"({"f32":null,"inf":null,"minus_inf":null,"nan":null,"x":1.5})");
  EXPECT_EQ(j.dump(2).find("NaN"), std::string::npos);
  EXPECT_EQ(j.dump(2).find("Infinity"), std::string::npos);
}

TEST(JsonOutput, SummaryWithNonFiniteValuesParsesStrictly) {
  train::TrainSummary s;
  s.status = "completed";
  s.steps_done = 3;
  s.train_time_s = 1.25;
  s.step_avg_ms = std::nan("");
  s.tokens_per_s = std::numeric_limits<double>::infinity();
  s.val.push_back({0, std::nan(""), 0.0});
  s.val.push_back({3, 5.5, 1.25});
  const std::string text = s.to_json().dump(2);
  const nlohmann::json back = nlohmann::json::parse(text);  // strict JSON: throws on NaN
  EXPECT_TRUE(back["step_avg_ms"].is_null());
  EXPECT_TRUE(back["tokens_per_s"].is_null());
  EXPECT_TRUE(back["val"][0]["val_loss"].is_null());
  EXPECT_EQ(back["val"][1]["val_loss"].get<double>(), 5.5);
  EXPECT_EQ(back["final_val_loss"].get<double>(), 5.5);
}

TEST(ErrorLines, OutOfMemoryIsAnErrorNotABug) {
  EXPECT_EQ(failure_line(UserError("data.train_glob: no files match 'x'")),
            "error: data.train_glob: no files match 'x'");
  EXPECT_EQ(failure_line(std::logic_error("bad rank")), "internal error: bad rank");
  const std::string oom = failure_line(std::bad_alloc());
  EXPECT_EQ(oom.rfind("error: out of memory: an allocation failed (std::bad_alloc)", 0), 0u) << oom;
  EXPECT_NE(oom.find("train.micro_batch_seqs"), std::string::npos) << oom;
  EXPECT_EQ(failure_message(std::bad_alloc()).rfind("out of memory", 0), 0u);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The run log keeps what was logged before its file exists, writes the header first,
// then the kept lines, then everything after; the logger's messages reach it through
// the tee only while it lives.
TEST(RunLog, KeepsEarlyLinesAndTheLoggersMessages) {
  init_logging(Verbosity::normal);
  const auto dir = std::filesystem::temp_directory_path() / ("speedrun-runlog-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "log.txt";
  std::filesystem::remove(path);
  {
    train::RunLog log(true);
    spdlog::info("before the file: {}", 1);
    log.line("a plain line");
    log.open(path, "header");
    spdlog::warn("after the file: {}", 2);
    log.line("step:1/2 val_loss:1.00000");
  }
  spdlog::info("after the log is gone");  // not captured
  {
    train::RunLog other_rank(false);  // disabled: writes nothing, captures nothing
    other_rank.open(dir / "other.txt", "header");
    other_rank.line("x");
  }
  EXPECT_EQ(read_file(path),
            "header\ninfo: before the file: 1\na plain line\nwarning: after the file: 2\nstep:1/2 val_loss:1.00000\n");
  EXPECT_FALSE(std::filesystem::exists(dir / "other.txt"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace speedrun::test

namespace speedrun::test {
namespace {

// compare keeps a failed run's logged validation points; a diverged validation is
// logged with "val_loss": null and a killed run may leave half a line: neither is a point.
TEST(JsonOutput, LoggedValPointsSkipNullAndPartialLines) {
  const auto dir = std::filesystem::temp_directory_path() / ("speedrun-valpoints-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir / "metrics.jsonl");
    out << R"({"step":0,"train_time_s":0.0,"val_loss":10.5})" << "\n"
        << R"({"lr_factor":1.0,"step":1,"train_loss":9.25,"train_time_s":0.5})" << "\n"
        << R"({"step":2,"train_time_s":1.0,"val_loss":null})" << "\n"
        << R"({"step":3,"train_time_s":1.5,"val_lo)";
  }
  const auto points = compare::read_logged_val_points(dir);
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].step, 0);
  EXPECT_EQ(points[0].val_loss, 10.5);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace speedrun::test
