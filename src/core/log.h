// Logging: spdlog to stderr, at the verbosity chosen by --verbose / --quiet. Results a
// user or a script reads (progress lines, tables, resolved configs) go to stdout.
#pragma once

#include <spdlog/spdlog.h>

namespace speedrun {

enum class Verbosity { quiet, normal, verbose };

void init_logging(Verbosity v);
Verbosity verbosity();

}  // namespace speedrun
