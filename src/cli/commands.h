// The subcommands of `speedrun`. Each adds itself to the app with its options and
// returns what to run once the command line has been parsed (after logging is set
// up). Bad input is reported by throwing UserError.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace speedrun::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<void()> run;
};

Command add_info_command(CLI::App& app);
Command add_validate_config_command(CLI::App& app);
Command add_tokenize_command(CLI::App& app);
Command add_train_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_compare_command(CLI::App& app);
Command add_sample_command(CLI::App& app);
Command add_eval_command(CLI::App& app);
Command add_runs_command(CLI::App& app);
Command add_plot_command(CLI::App& app);

}  // namespace speedrun::cli
