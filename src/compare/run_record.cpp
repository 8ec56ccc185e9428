#include "compare/run_record.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "compare/run_plan.h"
#include "config/run_config.h"
#include "core/error.h"
#include "core/files.h"

namespace speedrun::compare {

namespace fs = std::filesystem;
using nlohmann::json;

std::optional<train::ValPoint> first_at_or_below(const std::vector<train::ValPoint>& val,
                                                 std::optional<double> target) {
  if (!target) return std::nullopt;
  for (const train::ValPoint& v : val)
    if (v.val_loss <= *target) return v;
  return std::nullopt;
}

void take_summary(RunResult& r, const train::TrainSummary& s) {
  r.train_status = s.status;
  r.steps = s.steps_done;
  r.train_time_s = s.train_time_s;
  r.step_avg_ms = s.step_avg_ms;
  r.tokens_per_s = s.tokens_per_s;
  r.val = s.val;
}

namespace {
train::ValPoint val_point(const json& j) {
  return {j.at("step").get<int64_t>(), j.at("val_loss").get<double>(), j.at("train_time_s").get<double>()};
}
}  // namespace

bool read_finished_run(RunResult& r, std::string& why_not) {
  const fs::path summary_file = r.run_dir / "summary.json", config_file = r.run_dir / "config.json";
  std::error_code ec;
  if (!fs::exists(r.run_dir, ec)) {
    why_not = "not run yet";
    return false;
  }
  if (!fs::exists(summary_file, ec) || !fs::exists(config_file, ec)) {
    why_not = fs::exists(r.run_dir / "failed.json", ec) ? "failed before" : "unfinished";
    return false;
  }
  try {
    const json cfg = config::parse_json_text(read_text_file(config_file), config_file.string());
    if (config_hash(cfg) != r.hash) {
      why_not = "its config.json differs from the planned config";
      return false;
    }
    const json s = config::parse_json_text(read_text_file(summary_file), summary_file.string());
    train::TrainSummary summary;
    summary.status = s.at("status").get<std::string>();
    if (summary.status == "interrupted") {  // stopped by a signal: not finished (it can be resumed)
      why_not = "interrupted";
      return false;
    }
    summary.steps_done = s.at("steps").get<int64_t>();
    summary.train_time_s = s.at("train_time_s").get<double>();
    summary.step_avg_ms = s.at("step_avg_ms").get<double>();
    summary.tokens_per_s = s.at("tokens_per_s").get<double>();
    for (const json& v : s.at("val")) summary.val.push_back(val_point(v));
    if (summary.val.empty()) {
      why_not = summary_file.string() + " has no validation points";
      return false;
    }
    take_summary(r, summary);
  } catch (const UserError& e) {
    why_not = e.what();
    return false;
  } catch (const json::exception& e) {
    why_not = summary_file.string() + ": unexpected content (" + e.what() + ")";
    return false;
  }
  return true;
}

std::vector<train::ValPoint> read_logged_val_points(const fs::path& run_dir) {
  std::vector<train::ValPoint> out;
  std::ifstream in(run_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    // A killed run may have left a partial last line: skip what does not parse. A
    // diverged validation is recorded with "val_loss": null: not a point either.
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("val_loss") && j["val_loss"].is_number() && j.contains("step") &&
        j.contains("train_time_s"))
      out.push_back(val_point(j));
  }
  return out;
}

bool prepare_run_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return false;
  if (!fs::is_directory(dir, ec))
    throw UserError("refusing to replace " + dir.string() + ": it is not a speedrun run directory; remove it yourself");
  if (fs::exists(dir / "config.json", ec)) return true;  // an earlier run of ours; the trainer replaces it
  // Only our own failure record (a run that failed before the trainer wrote anything)
  // and the hidden temporaries of a writer that was killed (of failed.json or
  // config.json): remove them. Anything else in there is someone's, and stays.
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec))
    if (e.path().filename() != "failed.json" && !is_atomic_temporary(e.path()))
      throw UserError("refusing to replace " + dir.string() +
                      ": it is not a speedrun run directory (no config.json); remove it yourself");
  fs::remove_all(dir, ec);
  if (ec) throw UserError("cannot remove " + dir.string() + ": " + ec.message());
  return false;
}

void write_failure(const RunResult& r) {
  ensure_writable_directory(r.run_dir);
  const json j = {{"status", "failed"}, {"error", r.error}, {"seed", r.seed}, {"config_hash", r.hash}};
  write_text_file_atomic(r.run_dir / "failed.json", j.dump(2) + "\n");
}

}  // namespace speedrun::compare
