// Usage errors (exit status 2): the message, then the usage of the command that was
// being parsed, with its full name ("Usage: speedrun bench [OPTIONS] config").
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace speedrun::cli {

// What is wrong with the arguments CLI11 did not take (`extras`, in command-line order)
// for `command` (the subcommand being parsed, or the app itself): "unknown argument
// --stpes (did you mean --steps?)", "unexpected argument extra (speedrun train takes one
// config)", one phrase per argument, joined by "; ".
std::string describe_extras(const CLI::App& app, const CLI::App& command, const std::vector<std::string>& extras);

// Prints "error: <what>" and the usage of the command being parsed to stderr; returns 2.
int usage_error(CLI::App& app, const CLI::ParseError& e);

}  // namespace speedrun::cli
