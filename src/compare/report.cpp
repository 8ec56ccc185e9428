#include "compare/report.h"

#include <cmath>

#include <spdlog/fmt/fmt.h>

namespace speedrun::compare {

using nlohmann::json;

std::vector<ConfigStats> config_stats(const std::vector<ComparedConfig>& configs,
                                      const std::vector<RunResult>& runs) {
  std::vector<ConfigStats> out(configs.size());
  std::vector<std::vector<double>> finals(configs.size());
  for (size_t c = 0; c < configs.size(); ++c) {
    ConfigStats& s = out[c];
    s.label = configs[c].label;
    s.file = configs[c].file;
    s.model = model_facts(configs[c].cfg);
    s.target = configs[c].cfg.train.target_val_loss;
    std::vector<double> steps, times, ms, tps;
    for (const RunResult& r : runs) {
      if (r.config_index != c) continue;
      ++s.runs;
      if (!r.ok()) {
        ++s.failed;
        continue;
      }
      finals[c].push_back(r.final_val_loss());
      ms.push_back(r.step_avg_ms);
      tps.push_back(r.tokens_per_s);
      if (r.first_at_target) {
        ++s.reached;
        steps.push_back(static_cast<double>(r.first_at_target->step));
        times.push_back(r.first_at_target->train_time_s);
      }
    }
    s.final_loss = moments(finals[c]);
    s.steps_to_target = moments(steps);
    s.time_to_target = moments(times);
    s.step_avg_ms = moments(ms);
    s.tokens_per_s = moments(tps);
    if (s.target && s.final_loss.n > 0) s.track3 = track3_significance(*s.target, s.final_loss.mean, s.final_loss.n);
  }
  for (size_t c = 1; c < configs.size(); ++c) {
    WelchResult w;
    if (welch_t_test(finals[c], finals[0], w)) out[c].vs_first = w;
  }
  return out;
}

namespace {

// "mean ± std" with `decimals`; the std is left out when undefined (one run).
std::string mean_std(const Moments& m, int decimals) {
  if (m.n == 0) return "—";
  if (std::isnan(m.std)) return fmt::format("{:.{}f}", m.mean, decimals);
  return fmt::format("{:.{}f} ± {:.{}f}", m.mean, decimals, m.std, decimals);
}

std::string number_or_null(double x) { return std::isfinite(x) ? fmt::format("{}", x) : ""; }

json json_number(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

json moments_json(const Moments& m) {
  return {{"n", m.n}, {"mean", json_number(m.mean)}, {"std", json_number(m.std)}};
}

json val_json(const train::ValPoint& v) {
  return {{"step", v.step}, {"val_loss", v.val_loss}, {"train_time_s", v.train_time_s}};
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

std::string markdown_report(const std::vector<ConfigStats>& stats, const std::vector<ComparedConfig>& configs,
                            const std::vector<RunResult>& runs) {
  const std::string first = stats.empty() ? "" : stats.front().label;
  std::string md;
  md += fmt::format(
      "| config | runs | reached target | steps to target | time to target (s) | final val loss | Track 3 check "
      "| p vs {} | ms/step | tokens/s |\n",
      first);
  md += "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const ConfigStats& s : stats) {
    const int finished = s.runs - s.failed;
    const std::string runs_cell = s.failed ? fmt::format("{} ({} failed)", finished, s.failed) : fmt::format("{}", finished);
    const std::string reached =
        s.target ? fmt::format("{}/{} (≤ {})", s.reached, finished, *s.target) : std::string("no target");
    std::string check = "—";
    if (s.track3) check = fmt::format("{:.4f} {}", *s.track3, *s.track3 >= kTrack3Margin ? "pass" : "fail");
    std::string p = &s == &stats.front() ? "(reference)" : "—";
    if (s.vs_first) p = fmt::format("{:.3g}", s.vs_first->p);
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", s.label, runs_cell, reached,
                      mean_std(s.steps_to_target, 0), mean_std(s.time_to_target, 2), mean_std(s.final_loss, 4), check,
                      p, mean_std(s.step_avg_ms, 1), mean_std(s.tokens_per_s, 0));
  }
  md += "\n";
  md += "Mean ± sample standard deviation over seeds. Steps and time to target: the first validation at or below "
        "the target (no interpolation), over the runs that reached it; time is training time (validation "
        "excluded). Track 3 check: (target − mean final val loss)·√n, to be ≥ 0.004. p: Welch's two-sided "
        "t-test of the final val loss against " +
        first + ".\n";
  // The models side by side: losses are per token on the same validation tokens (checked before
  // anything ran, compare/comparability.h), but a bigger or costlier model buys its loss with
  // more compute per token.
  md += "\n| config | arch | parameters | FLOPs/token | tokens/step | file |\n|---|---|---|---|---|---|\n";
  for (size_t c = 0; c < configs.size(); ++c) {
    const ModelFacts& m = c < stats.size() ? stats[c].model : model_facts(configs[c].cfg);
    md += fmt::format("| {} | {} | {} | {:.4g} | {} | `{}` |\n", configs[c].label, m.arch, m.parameters,
                      m.flops_per_token, configs[c].cfg.train.batch_tokens, configs[c].file);
  }
  md += "\nFLOPs/token: forward and backward, 6 per matrix parameter plus causal attention's 6·layers·seq_len·width "
        "(model/flops.h; for record26 an upper bound, its windows and documents skip most of the triangle).\n";
  bool any_failed = false;
  for (const RunResult& r : runs) {
    if (r.ok()) continue;
    if (!any_failed) md += "\nFailed runs:\n\n";
    any_failed = true;
    md += fmt::format("- {} seed {} (`{}`): {}\n", configs[r.config_index].label, r.seed, r.run_dir.string(), r.error);
  }
  return md;
}

std::string val_points_csv(const std::vector<ComparedConfig>& configs, const std::vector<RunResult>& runs) {
  std::string csv = "config,seed,outcome,run_dir,step,val_loss,train_time_s\n";
  for (const RunResult& r : runs)
    for (const train::ValPoint& v : r.val)
      csv += fmt::format("{},{},{},{},{},{},{}\n", csv_field(configs[r.config_index].label), r.seed, r.outcome,
                         csv_field(r.run_dir.string()), v.step, number_or_null(v.val_loss),
                         number_or_null(v.train_time_s));
  return csv;
}

json results_json(const std::vector<ConfigStats>& stats, const std::vector<ComparedConfig>& configs,
                  const std::vector<RunResult>& runs) {
  json j;
  j["configs"] = json::array();
  for (const ConfigStats& s : stats) {
    json c = {{"label", s.label},
              {"file", s.file},
              {"arch", s.model.arch},
              {"parameters", s.model.parameters},
              {"matmul_parameters", s.model.matmul_params},
              {"flops_per_token", s.model.flops_per_token},
              {"runs", s.runs},
              {"failed", s.failed},
              {"target", s.target ? json(*s.target) : json(nullptr)},
              {"reached", s.reached},
              {"final_val_loss", moments_json(s.final_loss)},
              {"steps_to_target", moments_json(s.steps_to_target)},
              {"time_to_target_s", moments_json(s.time_to_target)},
              {"step_avg_ms", moments_json(s.step_avg_ms)},
              {"tokens_per_s", moments_json(s.tokens_per_s)}};
    c["track3_check"] = s.track3 ? json{{"value", *s.track3}, {"margin", kTrack3Margin}, {"pass", *s.track3 >= kTrack3Margin}}
                                 : json(nullptr);
    c["welch_vs_first"] =
        s.vs_first ? json{{"t", s.vs_first->t}, {"df", s.vs_first->df}, {"p", s.vs_first->p}} : json(nullptr);
    j["configs"].push_back(std::move(c));
  }
  j["runs"] = json::array();
  for (const RunResult& r : runs) {
    json v = json::array();
    for (const train::ValPoint& p : r.val) v.push_back(val_json(p));
    json run = {{"config", configs[r.config_index].label},
                {"seed", r.seed},
                {"run_dir", r.run_dir.string()},
                {"config_hash", r.hash},
                {"outcome", r.outcome},
                {"val", std::move(v)},
                {"first_at_target", r.first_at_target ? val_json(*r.first_at_target) : json(nullptr)}};
    if (r.ok()) {
      run["train_status"] = r.train_status;
      run["steps"] = r.steps;
      run["final_val_loss"] = r.final_val_loss();
      run["train_time_s"] = r.train_time_s;
      run["step_avg_ms"] = r.step_avg_ms;
      run["tokens_per_s"] = r.tokens_per_s;
    } else {
      run["error"] = r.error;
    }
    j["runs"].push_back(std::move(run));
  }
  return j;
}

}  // namespace speedrun::compare
