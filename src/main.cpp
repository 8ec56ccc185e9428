// speedrun: trains the modded-nanogpt GPT-2 and compares matrix optimizers.
//
// Exit status: 0 success; 1 an error (bad input, failed run); 2 a usage error
// (unknown flag, missing argument).
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "build_info.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/usage.h"
#include "core/error.h"
#include "core/log.h"

int main(int argc, char** argv) {
  CLI::App app{"speedrun: train GPT-2 the modded-nanogpt way and compare Muon, Newton-Muon and RMNP"};
  app.name("speedrun");
  app.set_version_flag("--version", std::string(SPEEDRUN_VERSION) + " (" + SPEEDRUN_GIT_COMMIT + ")");
  app.require_subcommand(1);
  app.fallthrough();  // --verbose/--quiet work before or after the subcommand
  bool verbose = false, quiet = false;
  auto* v = app.add_flag("-v,--verbose", verbose, "more log output (debug level)");
  app.add_flag("-q,--quiet", quiet, "only warnings and errors")->excludes(v);

  speedrun::cli::remember_command_line(argc, argv);
  const speedrun::cli::Command commands[] = {
      speedrun::cli::add_train_command(app),
      speedrun::cli::add_bench_command(app),
      speedrun::cli::add_compare_command(app),
      speedrun::cli::add_sample_command(app),
      speedrun::cli::add_eval_command(app),
      speedrun::cli::add_runs_command(app),
      speedrun::cli::add_plot_command(app),
      speedrun::cli::add_validate_config_command(app),
      speedrun::cli::add_info_command(app),
      speedrun::cli::add_tokenize_command(app),
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return speedrun::cli::usage_error(app, e);
  }

  speedrun::init_logging(quiet ? speedrun::Verbosity::quiet
                         : verbose ? speedrun::Verbosity::verbose
                                   : speedrun::Verbosity::normal);
  try {
    for (const auto& command : commands)
      if (command.app->parsed()) command.run();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", speedrun::failure_line(e).c_str());
    return 1;
  }
}
