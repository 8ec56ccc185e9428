#include "compare/run_plan.h"

#include <cstdio>
#include <map>
#include <set>

#include "core/error.h"
#include "core/hash.h"

namespace speedrun::compare {

namespace {
std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    out += ok ? c : '_';
  }
  if (out.empty() || out == "." || out == "..") out = "config";
  return out;
}
}  // namespace

std::string config_hash(const nlohmann::json& resolved_config) {
  nlohmann::json j = resolved_config;
  if (j.contains("train") && j["train"].is_object()) {
    nlohmann::json& t = j["train"];
    t.erase("out_dir");
    if (!t.value("stop_at_target", false)) t.erase("target_val_loss");
  }
  // nlohmann::json keeps object keys sorted, so dump() is canonical.
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a_64(j.dump())));
  return hex;
}

std::string config_hash(const config::RunConfig& cfg) { return config_hash(config::to_json(cfg)); }

void assign_labels(std::vector<ComparedConfig>& configs) {
  std::map<std::string, int> seen;
  for (ComparedConfig& c : configs) {
    std::string base = safe_name(c.cfg.name.empty() ? std::filesystem::path(c.file).stem().string() : c.cfg.name);
    std::string label = base;
    for (int k = 2; seen.count(label); ++k) label = base + "-" + std::to_string(k);
    seen[label] = 1;
    c.label = label;
  }
}

std::vector<PlannedRun> plan_runs(const std::vector<ComparedConfig>& configs, int seeds,
                                  const std::filesystem::path& runs_dir) {
  // Two files that resolve to the same run would share run directories and count the
  // same runs twice; that is a mistake on the command line, not a comparison.
  std::map<std::string, size_t> first_with_hash;
  for (size_t c = 0; c < configs.size(); ++c) {
    const std::string h = config_hash(configs[c].cfg);
    auto [it, fresh] = first_with_hash.emplace(h, c);
    if (!fresh)
      throw UserError(configs[c].file + " and " + configs[it->second].file +
                      " are the same run config (after --set and --target); give each config once");
  }
  std::vector<PlannedRun> runs;
  for (int k = 0; k < seeds; ++k)
    for (size_t c = 0; c < configs.size(); ++c) {
      PlannedRun r;
      r.config_index = c;
      r.seed_index = k;
      r.cfg = configs[c].cfg;
      r.seed = r.cfg.train.seed + k;
      r.cfg.train.seed = r.seed;
      r.cfg.train.out_dir = runs_dir.string();
      r.hash = config_hash(r.cfg);
      r.run_name = configs[c].label + "-seed" + std::to_string(r.seed) + "-" + r.hash.substr(0, 12);
      r.run_dir = runs_dir / r.run_name;
      runs.push_back(std::move(r));
    }
  return runs;
}

}  // namespace speedrun::compare
