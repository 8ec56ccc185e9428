#include "cli/common.h"

namespace speedrun::cli {

static std::string g_command_line;

CLI::Validator key_value_form() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const size_t eq = text.find('=');
        if (eq == std::string::npos || eq == 0) return "expected KEY=VALUE, e.g. --set train.steps=100, got '" + text + "'";
        return "";
      },
      "");  // the option's type_name already says KEY=VALUE
}

void add_config_options(CLI::App* sub, ConfigOptions& opts, bool config_required) {
  auto* c = sub->add_option("config", opts.config, "run config (JSON)");
  if (config_required) c->required();
  sub->add_option("--set", opts.sets,
                  "override a config key, typed by the schema (repeatable): --set train.steps=100 "
                  "--set optimizers[1].lr=0.02")
      ->type_name("KEY=VALUE")
      ->check(key_value_form());
}

config::RunConfig load_config(const ConfigOptions& opts) {
  std::vector<config::Override> overrides;
  for (const std::string& s : opts.sets) overrides.push_back(config::parse_override(s));
  return config::load_run_config(opts.config, overrides);
}

void remember_command_line(int argc, char** argv) {
  g_command_line.clear();
  for (int i = 0; i < argc; ++i) {
    if (i) g_command_line += ' ';
    g_command_line += argv[i];
  }
}

std::string joined_command_line() { return g_command_line; }

}  // namespace speedrun::cli
