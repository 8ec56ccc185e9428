// speedrun compare: every config for every seed, one run directory each, then the
// statistics, table, CSV/JSON of every validation point, and plots. Rerunning the same
// command reuses the runs that finished (matched by a hash of their resolved config)
// and reruns the others.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "compare/comparability.h"
#include "compare/plots.h"
#include "compare/report.h"
#include "compare/run_plan.h"
#include "compare/run_record.h"
#include "compare/val_coverage.h"
#include "core/error.h"
#include "core/files.h"
#include "model/device_support.h"
#include "train/device_choice.h"
#include "train/progress.h"

namespace speedrun::cli {

namespace fs = std::filesystem;
using compare::ComparedConfig;
using compare::PlannedRun;
using compare::RunResult;

namespace {

struct Options {
  std::vector<std::string> configs;
  std::vector<std::string> sets;
  int seeds = 3;
  double target = 0.0;
  bool have_target = false;
  std::string out;
  std::string device;  // empty: each config's train.device
  bool no_plots = false, no_progress = false;
};

// Loads every config before anything runs, reporting every bad one at once.
std::vector<ComparedConfig> load_configs(const Options& o) {
  std::vector<ComparedConfig> configs;
  std::string problems;
  int bad = 0;
  for (const std::string& file : o.configs) {
    try {
      ComparedConfig c;
      c.file = file;
      c.cfg = load_config({file, o.sets});
      if (o.have_target) c.cfg.train.target_val_loss = o.target;
      if (!o.device.empty()) c.cfg.train.device = o.device;
      // A model the CUDA kernels cannot run would fail every one of its runs: say so now.
      const std::string& device = c.cfg.train.device;
      if (device == "cuda" || (device == "auto" && train::resolve_device("auto") == Device::cuda)) {
        try {
          model::check_model_runs_on(c.cfg.model, Device::cuda);
        } catch (const UserError& e) {
          throw UserError(file + ": " + e.what());
        }
      }
      configs.push_back(std::move(c));
    } catch (const UserError& e) {
      ++bad;
      problems += std::string(problems.empty() ? "" : "\n") + e.what();
    }
  }
  if (bad)
    throw UserError(problems + fmt::format("\n{} of {} config(s) could not be loaded; nothing was run", bad,
                                           o.configs.size()));
  compare::assign_labels(configs);
  // Losses of runs that validate on other tokens, or train on other data, say nothing about
  // each other: refuse before anything runs (models may differ: that is what is compared).
  std::vector<compare::DataFingerprint> data;
  for (const ComparedConfig& c : configs) data.push_back(compare::data_fingerprint(c.cfg));
  compare::check_comparable(configs, data);
  return configs;
}

fs::path default_out_dir(const std::vector<ComparedConfig>& configs) {
  std::string name = "compare";
  for (size_t i = 0; i < configs.size(); ++i) name += (i ? "-vs-" : "-") + configs[i].label;
  if (name.size() > 96) name = name.substr(0, 80) + "-" + compare::config_hash(nlohmann::json(name)).substr(0, 8);
  return fs::path(configs.front().cfg.train.out_dir) / name;
}

// Seconds a run of config c is expected to take, from the runs done so far (< 0: unknown).
struct RunTimes {
  std::map<size_t, std::pair<double, int>> per_config;
  double total = 0.0;
  int count = 0;
  void add(size_t c, double s) {
    auto& [sum, n] = per_config[c];
    sum += s;
    ++n;
    total += s;
    ++count;
  }
  double estimate(size_t c) const {
    if (auto it = per_config.find(c); it != per_config.end()) return it->second.first / it->second.second;
    return count ? total / count : -1.0;
  }
};

void run_one(const PlannedRun& plan, RunResult& r, const std::string& label, const Options& o, double eta_after) {
  const auto started = fs::file_time_type::clock::now();
  bool foreign_dir = false;
  try {
    bool replace = false;
    try {
      replace = compare::prepare_run_dir(plan.run_dir);
    } catch (const UserError&) {
      foreign_dir = true;
      throw;
    }
    train::TrainOptions opts;
    opts.run_name = plan.run_name;
    opts.force = replace;
    opts.command_line = joined_command_line();
    opts.progress = !o.no_progress;
    opts.progress_label = label;
    opts.eta_after_s = eta_after;
    const train::TrainSummary s = train::run_training(plan.cfg, opts);
    if (s.signal != 0) {
      // Ctrl-C or SIGTERM: the run wrote its checkpoint and summary ("interrupted", which
      // a later compare reruns); the comparison ends here, as the signal asked.
      std::fflush(nullptr);
      std::exit(128 + s.signal);
    }
    compare::take_summary(r, s);
    r.outcome = "ran";
    return;
  } catch (const std::exception& e) {
    r.error = failure_message(e);
  }
  r.outcome = "failed";
  if (foreign_dir) return;
  // Keep the points the run logged before it failed, if this attempt wrote them.
  std::error_code ec;
  const auto written = fs::last_write_time(plan.run_dir / "config.json", ec);
  if (!ec && written >= started) r.val = compare::read_logged_val_points(plan.run_dir);
  try {
    compare::write_failure(r);
  } catch (const UserError& e) {
    spdlog::warn("{}", e.what());
  }
}

void run_comparison(const Options& o) {
  // Before anything is loaded or run: a binary without CUDA, or a machine without a device,
  // would otherwise fail every run one by one with the same message.
  if (o.device == "cuda") {
    try {
      train::resolve_device("cuda");
    } catch (const UserError& e) {
      throw UserError(std::string("compare --device cuda: ") + e.what());
    }
  }
  std::vector<ComparedConfig> configs = load_configs(o);
  const fs::path out_dir = fs::absolute(o.out.empty() ? default_out_dir(configs) : fs::path(o.out)).lexically_normal();
  ensure_writable_directory(out_dir);
  const std::vector<PlannedRun> plan = compare::plan_runs(configs, o.seeds, out_dir / "runs");
  // Before anything runs: a config that validates too rarely gives no curve to compare.
  for (const ComparedConfig& c : configs)
    if (const std::string w = compare::too_few_validations_warning(c.label, c.cfg.train); !w.empty())
      spdlog::warn("{}", w);

  // Which runs finished earlier: known up front, so the ETA counts only what will run.
  std::vector<RunResult> results(plan.size());
  std::vector<bool> finished(plan.size());
  int to_run = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    RunResult& r = results[i];
    r.config_index = plan[i].config_index;
    r.seed_index = plan[i].seed_index;
    r.seed = plan[i].seed;
    r.hash = plan[i].hash;
    r.run_dir = plan[i].run_dir;
    std::string why_not;
    finished[i] = compare::read_finished_run(r, why_not);
    if (finished[i]) r.outcome = "reused";
    to_run += !finished[i];
  }
  std::printf("comparing %zu config(s) x %d seed(s) = %zu runs (%d to run, %zu finished earlier) in %s\n",
              configs.size(), o.seeds, plan.size(), to_run, plan.size() - static_cast<size_t>(to_run),
              out_dir.c_str());
  for (const ComparedConfig& c : configs) {
    const compare::ModelFacts m = compare::model_facts(c.cfg);
    std::printf("  %s: model.arch %s, %lld parameters, %.4g FLOPs/token, %lld tokens/step\n", c.label.c_str(),
                m.arch.c_str(), static_cast<long long>(m.parameters), m.flops_per_token,
                static_cast<long long>(c.cfg.train.batch_tokens));
  }
  std::fflush(stdout);

  RunTimes times;
  for (size_t i = 0; i < plan.size(); ++i) {
    const PlannedRun& p = plan[i];
    RunResult& r = results[i];
    const std::string& label = configs[p.config_index].label;
    const std::string tag = fmt::format("[{}/{} {} seed {}]", i + 1, plan.size(), label, p.seed);
    if (finished[i]) {
      std::printf("%s skipped (finished): %s\n", tag.c_str(), p.run_dir.c_str());
    } else {
      double eta_after = 0.0;
      for (size_t j = i + 1; j < plan.size() && eta_after >= 0; ++j) {
        if (finished[j]) continue;
        const double e = times.estimate(plan[j].config_index);
        eta_after = e < 0 ? -1.0 : eta_after + e;
      }
      std::printf("%s running: %s%s\n", tag.c_str(), p.run_dir.c_str(),
                  eta_after >= 0 ? (" (the runs after it: ~" + train::format_duration(eta_after) + ")").c_str() : "");
      std::fflush(stdout);
      const auto t0 = std::chrono::steady_clock::now();
      run_one(p, r, tag, o, eta_after);
      times.add(p.config_index, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    r.first_at_target = compare::first_at_or_below(r.val, configs[p.config_index].cfg.train.target_val_loss);
    if (r.ok()) {
      std::string target = "";
      if (configs[p.config_index].cfg.train.target_val_loss)
        target = r.first_at_target ? fmt::format(", target reached at step {} ({:.1f}s)", r.first_at_target->step,
                                                 r.first_at_target->train_time_s)
                                   : std::string(", target not reached");
      std::printf("%s %s: final val_loss %.5f after %lld steps%s\n", tag.c_str(),
                  r.outcome == "ran" ? "done" : "earlier result", r.final_val_loss(), static_cast<long long>(r.steps),
                  target.c_str());
    } else {
      std::printf("%s FAILED: %s\n", tag.c_str(), r.error.c_str());
    }
    std::fflush(stdout);
  }

  const std::vector<compare::ConfigStats> stats = compare::config_stats(configs, results);
  const std::string md = compare::markdown_report(stats, configs, results);
  write_text_file_atomic(out_dir / "comparison.md", md);
  write_text_file_atomic(out_dir / "val_points.csv", compare::val_points_csv(configs, results));
  const fs::path json_file = out_dir / "results.json";
  write_text_file_atomic(json_file, compare::results_json(stats, configs, results).dump(2) + "\n");
  compare::PlotOutcome plot_outcome;
  plot_outcome.message = "plots skipped: --no-plots";
  if (!o.no_plots) plot_outcome = compare::draw_plots(json_file, out_dir);
  const std::string& plots = plot_outcome.message;

  std::printf("\n%s\nwrote %s, %s, %s\n%s\n", md.c_str(), (out_dir / "comparison.md").c_str(),
              (out_dir / "val_points.csv").c_str(), json_file.c_str(), plots.c_str());
  std::fflush(stdout);

  int failed = 0;
  std::string which;
  for (const RunResult& r : results)
    if (!r.ok()) {
      ++failed;
      which += fmt::format("\n  {} seed {}: {}", configs[r.config_index].label, r.seed, r.error);
    }
  if (failed)
    throw UserError(fmt::format("{} of {} runs failed (the table covers the others):{}", failed, results.size(), which));
  // Plots that could not be drawn for want of matplotlib are skipped; a plot that could
  // not be written (a full disk) is an output missing, so the comparison fails.
  if (plot_outcome.failed) throw UserError(plots);
}

}  // namespace

Command add_compare_command(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "compare",
      "run every config for every seed and compare them: steps and time to the target, final loss, Track 3 "
      "significance, Welch's t-test; writes a Markdown table, CSV, JSON and plots; rerunning resumes");
  sub->add_option("configs", o->configs, "run configs (JSON); the first is the reference of the t-tests")
      ->required()
      ->expected(1, -1);
  sub->add_option("--seeds", o->seeds,
                  "seeds per config: train.seed + 0 .. train.seed + N-1 (they change the initialization only; "
                  "the data order is the same for every seed)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  auto* target = sub->add_option("--target", o->target, "target validation loss (overrides train.target_val_loss)")
                     ->check(CLI::Validator(
                         [](std::string& v) {
                           double x = 0.0;
                           return CLI::detail::lexical_cast(v, x) && x > 0.0 ? std::string()
                                                                              : "expected a loss > 0, got " + v;
                         },
                         "LOSS > 0"));
  sub->add_option("--set", o->sets, "override a key of every config (repeatable): --set train.steps=100")
      ->type_name("KEY=VALUE")
      ->check(key_value_form());
  sub->add_option("--out", o->out, "output directory (default: <train.out_dir>/compare-<a>-vs-<b>...)");
  sub->add_option("--device", o->device,
                  "run every config on this device (overrides train.device): cpu, cuda or auto; the runs go one "
                  "at a time, in this process")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_flag("--no-plots", o->no_plots, "do not draw the PNG plots");
  sub->add_flag("--no-progress", o->no_progress, "no per-step progress lines (validation lines still print)");
  return {sub, [o, target] {
            o->have_target = target->count() > 0;
            run_comparison(*o);
          }};
}

}  // namespace speedrun::cli
