// Logging: spdlog to stderr, at the verbosity chosen by --verbose / --quiet. Results a
// user or a script reads (progress lines, tables, resolved configs) go to stdout.
#pragma once

#include <functional>
#include <string>

#include <spdlog/spdlog.h>

namespace speedrun {

enum class Verbosity { quiet, normal, verbose };

void init_logging(Verbosity v);
Verbosity verbosity();

// While set, every message the console logger prints is also handed to `tee` as one
// line "level: message" (no colour codes): a run's log.txt (train/run_log.h) gets the
// info lines and warnings the console showed. An empty function stops it. `tee` is
// called under a lock, from whichever thread logs; it must not log itself.
void set_log_tee(std::function<void(const std::string& line)> tee);

}  // namespace speedrun
