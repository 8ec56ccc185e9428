// speedrun runs: the runs in a directory, newest first — status, steps, final loss, step
// at the target, speed, device, start time — or the same as JSON.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "compare/run_listing.h"

namespace speedrun::cli {

namespace {

struct Options {
  std::string dir = "runs";
  bool json = false;
};

void run_runs(const Options& o) {
  const std::vector<compare::RunInfo> runs = compare::list_runs(o.dir);
  if (o.json) {
    nlohmann::json all = nlohmann::json::array();
    for (const compare::RunInfo& r : runs) all.push_back(compare::run_info_json(r));
    std::printf("%s\n", all.dump(2).c_str());
    return;
  }
  if (runs.empty()) {
    std::printf("no runs in %s\n", o.dir.c_str());
    return;
  }
  std::fputs(compare::runs_table(runs).c_str(), stdout);
}

}  // namespace

Command add_runs_command(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "runs",
      "list the runs in a directory, newest first: status (completed, stopped_at_target, running, failed, killed), "
      "steps done of total, final val loss, first step at the target, tokens/s, device, start time");
  sub->add_option("dir", o->dir, "where to look, recursively (compare's runs too)")->capture_default_str();
  sub->add_flag("--json", o->json, "print a JSON list instead of the table");
  return {sub, [o] { run_runs(*o); }};
}

}  // namespace speedrun::cli
