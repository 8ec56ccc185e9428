#include "compare/run_listing.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <regex>

#include <spdlog/fmt/fmt.h>

#include "core/error.h"
#include "core/file_lock.h"
#include "core/files.h"

namespace speedrun::compare {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kMaxDepth = 4;  // runs/compare-x/runs/<run>: three levels below the listed directory

bool is_run_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / "config.json", ec)) return false;
  for (const char* f : {"metrics.jsonl", "log.txt", "summary.json", "failed.json"})
    if (fs::exists(dir / f, ec)) return true;
  return false;
}

void find_runs(const fs::path& dir, int depth, std::vector<fs::path>& out) {
  if (is_run_dir(dir)) {
    out.push_back(dir);
    return;  // a run's own subdirectories (params/) hold no runs
  }
  if (depth >= kMaxDepth) return;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (name.empty() || name[0] == '.' || !it->is_directory(type_ec) || it->is_symlink(type_ec)) continue;
    find_runs(it->path(), depth + 1, out);
  }
}

std::optional<json> read_json(const fs::path& path, std::string& problem) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  try {
    return json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    problem = path.filename().string() + ": not valid JSON (" + std::string(e.what()) + ")";
  } catch (const UserError& e) {
    problem = e.what();
  }
  return std::nullopt;
}

template <class T>
std::optional<T> number_at(const json& j, const char* a, const char* b = nullptr) {
  const json* v = &j;
  for (const char* key : {a, b}) {
    if (key == nullptr) break;
    if (!v->is_object() || !v->contains(key)) return std::nullopt;
    v = &(*v)[key];
  }
  if (!v->is_number()) return std::nullopt;
  return v->get<T>();
}

// The device from log.txt's "training: ... device cpu, 2 threads per process" line (absent
// under --quiet: then the command line's --device, in the log's first line), and its last
// error line (a failed run's reason), if any.
void read_log(const fs::path& path, RunInfo& run, std::string& last_error) {
  std::ifstream in(path);
  static const std::regex device_re(R"(^info: training: .*, device (\w+),)");
  static const std::regex flag_re(R"( --device[ =](cpu|cuda)\b)");
  std::smatch m;
  bool first = true;
  for (std::string line; std::getline(in, line); first = false) {
    if (first && std::regex_search(line, m, flag_re)) run.device = m[1];
    if (std::regex_search(line, m, device_re)) run.device = m[1];
    if (line.rfind("error: ", 0) == 0 || line.rfind("internal error: ", 0) == 0) last_error = line;
  }
}

RunInfo read_run(const fs::path& dir, const fs::path& listed) {
  RunInfo run;
  run.dir = dir;
  run.name = dir == listed ? dir.filename().string() : dir.lexically_relative(listed).string();
  struct stat st {};
  if (::stat((dir / "config.json").c_str(), &st) == 0) run.started = st.st_mtime;

  std::string problem;
  const std::optional<json> config = read_json(dir / "config.json", problem);
  if (config) {
    run.steps_total = number_at<int64_t>(*config, "train", "steps");
    run.target = number_at<double>(*config, "train", "target_val_loss");
    if (config->contains("train") && (*config)["train"].value("device", "") != "")
      run.device = (*config)["train"].value("device", "");
  }

  // metrics.jsonl: steps done, the curve, the speed so far (a killed run's last line
  // may be partial: what does not parse is skipped).
  std::vector<std::pair<int64_t, double>> val;
  std::ifstream metrics(dir / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    const std::optional<int64_t> step = number_at<int64_t>(j, "step");
    if (!step) continue;
    if (j.contains("train_loss")) {
      run.steps_done = std::max(run.steps_done, *step);
      if (auto t = number_at<double>(j, "tokens_per_s")) run.tokens_per_s = t;
    }
    if (auto v = number_at<double>(j, "val_loss")) val.emplace_back(*step, *v);
  }

  std::string last_error;
  read_log(dir / "log.txt", run, last_error);

  const std::optional<json> summary = read_json(dir / "summary.json", problem);
  if (summary && summary->is_object()) {
    run.status = summary->value("status", "completed");
    if (auto s = number_at<int64_t>(*summary, "steps")) run.steps_done = *s;
    if (auto t = number_at<double>(*summary, "tokens_per_s")) run.tokens_per_s = t;
    if (summary->contains("val") && (*summary)["val"].is_array()) {
      val.clear();
      for (const json& v : (*summary)["val"])
        if (auto s = number_at<int64_t>(v, "step"); s && number_at<double>(v, "val_loss"))
          val.emplace_back(*s, *number_at<double>(v, "val_loss"));
    }
  } else if (held_by_a_writer(dir / "log.txt")) {
    run.status = "running";
  } else {
    std::string failed_problem;
    const std::optional<json> failed = read_json(dir / "failed.json", failed_problem);
    if (!last_error.empty()) {
      run.status = "failed";
      run.detail = last_error;
    } else if (failed && failed->is_object()) {
      run.status = "failed";
      run.detail = "error: " + failed->value("error", std::string("(no reason recorded)"));
    } else {
      run.status = "killed";
      run.detail = "no summary.json and no error in log.txt: the process ended without finishing (a signal, "
                   "kill -9, a crash, or the machine going down)";
    }
  }
  if (!problem.empty() && (!config || !summary)) {
    if (!config) run.status = "unreadable";
    run.detail = problem;
  }
  if (!val.empty()) run.final_val_loss = val.back().second;
  if (run.target)
    for (const auto& [step, loss] : val)
      if (loss <= *run.target) {
        run.first_step_at_target = step;
        break;
      }
  return run;
}

std::string time_text(std::time_t t, const char* format) {
  std::tm local{};
  localtime_r(&t, &local);
  char text[64];
  std::strftime(text, sizeof text, format, &local);
  return text;
}

}  // namespace

std::vector<RunInfo> list_runs(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec))
    throw UserError("runs: " + dir.string() + " does not exist (runs are written to train.out_dir, runs/ by "
                    "default; name the directory: speedrun runs DIR)");
  if (!fs::is_directory(dir, ec)) throw UserError("runs: " + dir.string() + " is not a directory");
  std::vector<fs::path> dirs;
  find_runs(dir, 0, dirs);
  std::vector<RunInfo> runs;
  for (const fs::path& d : dirs) runs.push_back(read_run(d, dir));
  std::stable_sort(runs.begin(), runs.end(), [](const RunInfo& a, const RunInfo& b) {
    if (a.started.value_or(0) != b.started.value_or(0)) return a.started.value_or(0) > b.started.value_or(0);
    return a.name < b.name;
  });
  return runs;
}

json run_info_json(const RunInfo& r) {
  auto opt = [](const auto& v) { return v ? json(*v) : json(nullptr); };
  json j = {{"name", r.name},
            {"dir", r.dir.string()},
            {"status", r.status},
            {"steps_done", r.steps_done},
            {"steps_total", opt(r.steps_total)},
            {"final_val_loss", opt(r.final_val_loss)},
            {"target_val_loss", opt(r.target)},
            {"first_step_at_target", opt(r.first_step_at_target)},
            {"tokens_per_s", opt(r.tokens_per_s)},
            {"device", r.device.empty() ? json(nullptr) : json(r.device)},
            {"started", r.started ? json(time_text(*r.started, "%Y-%m-%dT%H:%M:%S%z")) : json(nullptr)},
            {"started_unix", opt(r.started)}};
  if (!r.detail.empty()) j["detail"] = r.detail;
  return j;
}

std::string runs_table(const std::vector<RunInfo>& runs) {
  std::vector<std::vector<std::string>> rows = {
      {"name", "status", "steps", "val_loss", "at target", "tokens/s", "device", "started"}};
  for (const RunInfo& r : runs) {
    std::string at_target = "-";
    if (r.first_step_at_target) at_target = "step " + std::to_string(*r.first_step_at_target);
    else if (r.target) at_target = "not yet";
    if (r.target && !r.first_step_at_target &&
        (r.status == "completed" || r.status == "stopped_at_target" || r.status == "failed" || r.status == "killed"))
      at_target = "no";
    rows.push_back({r.name, r.status,
                    std::to_string(r.steps_done) + "/" + (r.steps_total ? std::to_string(*r.steps_total) : "?"),
                    r.final_val_loss ? fmt::format("{:.5f}", *r.final_val_loss) : "-", at_target,
                    r.tokens_per_s ? fmt::format("{:.0f}", *r.tokens_per_s) : "-", r.device.empty() ? "?" : r.device,
                    r.started ? time_text(*r.started, "%Y-%m-%d %H:%M") : "?"});
  }
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    out += line + "\n";
  }
  for (const RunInfo& r : runs)
    if (!r.detail.empty() && r.status != "killed") out += r.name + ": " + r.detail + "\n";
  return out;
}

}  // namespace speedrun::compare
