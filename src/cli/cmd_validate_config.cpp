// speedrun validate-config: load, override and check a run config; print it resolved.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "config/run_config.h"
#include "core/error.h"

namespace speedrun::cli {

namespace {
struct Options {
  std::string config;
  std::vector<std::string> sets;
  bool reference = false;
};
}  // namespace

Command add_validate_config_command(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("validate-config",
                                     "check a run config (every problem is listed) and print it resolved, defaults "
                                     "included");
  sub->add_option("config", opts->config, "run config (JSON)");
  sub->add_option("--set", opts->sets, "override a key, typed by the schema: --set train.steps=100 (repeatable)")
      ->type_name("KEY=VALUE");
  sub->add_flag("--reference", opts->reference, "print the reference of every config key (Markdown) and exit");
  return {sub, [opts] {
            if (opts->reference) {
              std::fputs(config::config_reference_markdown().c_str(), stdout);
              return;
            }
            if (opts->config.empty()) throw UserError("validate-config: a config file is required (or --reference)");
            std::vector<config::Override> overrides;
            for (const std::string& s : opts->sets) overrides.push_back(config::parse_override(s));
            const config::RunConfig cfg = config::load_run_config(opts->config, overrides);
            std::printf("%s\n", config::to_json(cfg).dump(2).c_str());
            std::fprintf(stderr, "%s: ok\n", opts->config.c_str());
          }};
}

}  // namespace speedrun::cli
