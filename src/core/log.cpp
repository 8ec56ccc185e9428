#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace speedrun {

static Verbosity g_verbosity = Verbosity::normal;

void init_logging(Verbosity v) {
  g_verbosity = v;
  auto logger = spdlog::stderr_color_mt("speedrun");
  logger->set_pattern("%^%l%$: %v");
  logger->set_level(v == Verbosity::quiet ? spdlog::level::warn
                    : v == Verbosity::verbose ? spdlog::level::debug
                                              : spdlog::level::info);
  spdlog::set_default_logger(logger);
}

Verbosity verbosity() { return g_verbosity; }

}  // namespace speedrun
