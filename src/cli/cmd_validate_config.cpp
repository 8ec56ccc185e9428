// speedrun validate-config: load, override and check a run config; print it resolved.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "config/run_config.h"
#include "core/error.h"
#include "model/param_layout.h"
#include "optim/param_groups.h"

namespace speedrun::cli {

namespace {
struct Options {
  ConfigOptions config;
  bool reference = false;
};
}  // namespace

Command add_validate_config_command(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("validate-config",
                                     "check a run config (every problem is listed) and print it resolved, defaults "
                                     "included");
  add_config_options(sub, opts->config, /*config_required=*/false);
  sub->add_flag("--reference", opts->reference, "print the reference of every config key (Markdown) and exit");
  // CONFIG is required unless --reference is given: a usage error (exit 2, with the
  // usage), raised while parsing like CLI11's own required-argument errors.
  sub->callback([opts] {
    if (opts->config.config.empty() && !opts->reference) throw CLI::RequiredError("config (or --reference)");
  });
  return {sub, [opts] {
            if (opts->reference) {
              std::fputs(config::config_reference_markdown().c_str(), stdout);
              return;
            }
            const config::RunConfig cfg = load_config(opts->config);
            // Parameter groups are checked too: every parameter in exactly one entry.
            const model::ParamLayout layout(cfg.model);
            const auto groups = optim::assign_parameters(cfg.optimizers, layout);
            std::printf("%s\n", config::to_json(cfg).dump(2).c_str());
            for (size_t e = 0; e < groups.size(); ++e) {
              int64_t numel = 0;
              for (size_t i : groups[e]) numel += layout.params()[i].numel;
              std::fprintf(stderr, "optimizers[%zu] %s: %zu parameters, %.2fM values\n", e,
                           cfg.optimizers[e].type.c_str(), groups[e].size(), static_cast<double>(numel) / 1e6);
            }
            std::fprintf(stderr, "%s: ok\n", opts->config.config.c_str());
          }};
}

}  // namespace speedrun::cli
