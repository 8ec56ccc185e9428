// speedrun plot: the loss curves of one or several run directories in one PNG (training
// and validation loss against step and against training time; the lr factor too for a
// single run), drawn by scripts/plot_runs.py through compare's plotting (compare/plots.h).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "compare/plots.h"
#include "compare/run_plan.h"
#include "core/error.h"
#include "core/files.h"

namespace speedrun::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Options {
  std::vector<std::string> runs;
  std::string out;
  bool force = false;
};

// A run's curves from its metrics.jsonl, as plot_runs.py reads them. A killed run's
// partial last line is skipped; a running run is drawn as far as it got.
json read_curves(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UserError("plot: " + dir.string() + " is not a run directory (not a directory)");
  const fs::path metrics = dir / "metrics.jsonl";
  if (!fs::is_regular_file(metrics, ec))
    throw UserError("plot: " + dir.string() + " is not a run directory (no metrics.jsonl); runs are listed by "
                    "`speedrun runs`");
  json run = {{"name", name}, {"target", nullptr}, {"train", json::array()}, {"val", json::array()},
              {"lr", json::array()}};
  std::ifstream in(metrics);
  if (!in) throw UserError("plot: cannot read " + metrics.string());
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number() || !j.contains("train_time_s") ||
        !j["train_time_s"].is_number())
      continue;
    const json step = j["step"], time = j["train_time_s"];
    // A diverged run's last loss is null (JSON has no NaN): not a point.
    if (j.contains("train_loss") && j["train_loss"].is_number()) run["train"].push_back({step, j["train_loss"], time});
    if (j.contains("val_loss") && j["val_loss"].is_number()) run["val"].push_back({step, j["val_loss"], time});
    if (j.contains("lr_factor") && j["lr_factor"].is_number()) run["lr"].push_back({step, j["lr_factor"], time});
  }
  if (run["train"].empty() && run["val"].empty())
    throw UserError("plot: " + metrics.string() + " holds no loss yet (the run has not validated or stepped)");
  const fs::path config = dir / "config.json";
  if (fs::is_regular_file(config, ec)) {
    const json c = json::parse(read_text_file(config), nullptr, /*allow_exceptions=*/false);
    if (c.is_object() && c.contains("train") && c["train"].is_object() && c["train"].contains("target_val_loss") &&
        c["train"]["target_val_loss"].is_number())
      run["target"] = c["train"]["target_val_loss"];
  }
  return run;
}

fs::path default_out(const std::vector<fs::path>& dirs, const std::vector<std::string>& names) {
  if (dirs.size() == 1) return dirs.front() / "loss.png";  // the run's own directory
  std::string name = "loss";
  for (size_t i = 0; i < names.size(); ++i) name += (i ? "-vs-" : "-") + names[i];
  if (name.size() > 96) name = name.substr(0, 80) + "-" + compare::config_hash(json(name)).substr(0, 8);
  for (char& c : name)
    if (c == '/') c = '_';
  return name + ".png";
}

// A temporary file that is removed when it goes out of scope.
struct TempFile {
  fs::path path;
  ~TempFile() {
    std::error_code ec;
    if (!path.empty()) fs::remove(path, ec);
  }
};

void run_plot(const Options& o) {
  std::vector<fs::path> dirs;
  std::vector<std::string> names;
  for (const std::string& r : o.runs) {
    dirs.push_back(fs::path(r).lexically_normal());
    std::string name = fs::absolute(dirs.back()).lexically_normal().filename().string();
    if (name.empty()) name = fs::absolute(dirs.back()).lexically_normal().parent_path().filename().string();
    names.push_back(name);
  }
  // Two runs of the same name in different places: name them by their parent too.
  for (size_t i = 0; i < names.size(); ++i)
    for (size_t j = i + 1; j < names.size(); ++j)
      if (names[i] == names[j]) {
        names[j] = fs::absolute(dirs[j]).lexically_normal().parent_path().filename().string() + "/" + names[j];
        if (names[i] == names[j]) names[j] += "#" + std::to_string(j + 1);
      }
  json input = {{"runs", json::array()}};
  for (size_t i = 0; i < dirs.size(); ++i) input["runs"].push_back(read_curves(dirs[i], names[i]));

  const fs::path out = o.out.empty() ? default_out(dirs, names) : fs::path(o.out);
  std::error_code ec;
  if (fs::exists(out, ec) && !o.force) {
    if (fs::is_directory(out, ec)) throw UserError("plot: --out " + out.string() + " is a directory; name a .png file");
    if (!compare::is_speedrun_plot(out))
      throw UserError("plot: " + out.string() + " exists and is not a plot speedrun drew; refusing to overwrite it "
                      "(pass --force, or another --out)");
  }
  if (!out.parent_path().empty()) ensure_writable_directory(out.parent_path());

  TempFile data;
  {
    const fs::path dir = std::getenv("TMPDIR") && *std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    std::string pattern = (dir / "speedrun-plot-XXXXXX").string();
    const int fd = ::mkstemp(pattern.data());
    if (fd < 0) throw UserError("plot: cannot create a temporary file in " + dir.string() + ": " + errno_string(errno));
    ::close(fd);
    data.path = pattern;
    write_text_file_atomic(data.path, input.dump());
  }
  const compare::PlotOutcome outcome = compare::run_plot_script("plot_runs.py", {data.path.string(), out.string()}, {out});
  if (!outcome.drawn) throw UserError(outcome.message);
  std::printf("%s\n", outcome.message.c_str());
}

}  // namespace

Command add_plot_command(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "plot",
      "plot the loss of run directories: training and validation loss against step and against training time, "
      "one colour per run, the lr factor too for a single run (needs python3-matplotlib)");
  sub->add_option("runs", o->runs, "run directories (as `speedrun runs` lists them); a running run is drawn so far")
      ->required()
      ->expected(1, -1);
  sub->add_option("--out", o->out,
                  "the PNG to write (default: RUN/loss.png for one run, else ./loss-<a>-vs-<b>.png); an existing "
                  "file is replaced only when speedrun drew it, or with --force");
  sub->add_flag("--force", o->force, "replace --out even when it is not a plot speedrun drew");
  return {sub, [o] { run_plot(*o); }};
}

}  // namespace speedrun::cli
