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
#include "core/error.h"
#include "core/log.h"

namespace {

int usage_error(CLI::App& app, const CLI::ParseError& e) {
  // Show the usage of the subcommand that was being parsed, if any.
  CLI::App* target = &app;
  for (CLI::App* sub = &app; sub != nullptr;) {
    auto subs = sub->get_subcommands();
    if (subs.empty()) break;
    sub = target = subs.front();
  }
  // CLI11 checks for a missing subcommand or positional before it reports unrecognised
  // arguments, so `speedrun --bogus` or `speedrun bench --bogus` would only say "... is
  // required": name the culprit too.
  std::string message = e.what();
  const auto extras = app.remaining(/*recurse=*/true);
  if (!extras.empty() && message.find(extras.front()) == std::string::npos)
    message = "unknown argument " + extras.front() + " (and " + message + ")";
  std::fprintf(stderr, "error: %s\n\n%s", message.c_str(), target->help().c_str());
  return 2;
}

}  // namespace

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
    return usage_error(app, e);
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
