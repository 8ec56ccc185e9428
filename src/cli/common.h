// Options shared by the commands that take a run config.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "config/run_config.h"

namespace speedrun::cli {

struct ConfigOptions {
  std::string config;
  std::vector<std::string> sets;
};

// Adds the positional CONFIG and the repeatable --set KEY=VALUE.
// CLI11 check of a --set value's form (KEY=VALUE, a non-empty key): a malformed one is a
// usage error (exit 2, with the usage), like every other bad flag value. The key and the
// value themselves are checked against the schema when the config is loaded.
CLI::Validator key_value_form();

void add_config_options(CLI::App* sub, ConfigOptions& opts, bool config_required = true);

// Loads the config with every --set applied (throws UserError).
config::RunConfig load_config(const ConfigOptions& opts);

// The command line as one string, for run records.
std::string joined_command_line();
void remember_command_line(int argc, char** argv);

}  // namespace speedrun::cli
