#include "core/log.h"

#include <memory>
#include <mutex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace speedrun {

static Verbosity g_verbosity = Verbosity::normal;

namespace {

// Forwards each message, formatted without colour, to the tee set by set_log_tee.
class TeeSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  TeeSink() { set_formatter_(plain_formatter()); }
  // "level: message", no colour codes, no end of line (the tee's receiver adds it).
  static std::unique_ptr<spdlog::formatter> plain_formatter() {
    return std::make_unique<spdlog::pattern_formatter>("%l: %v", spdlog::pattern_time_type::local, "");
  }
  void set_tee(std::function<void(const std::string&)> tee) {
    std::lock_guard<std::mutex> lock(mutex_);
    tee_ = std::move(tee);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (!tee_) return;
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    tee_(std::string(formatted.data(), formatted.size()));
  }
  void flush_() override {}

 private:
  std::function<void(const std::string&)> tee_;
};

std::shared_ptr<TeeSink> tee_sink() {
  static const auto sink = std::make_shared<TeeSink>();
  return sink;
}

}  // namespace

void init_logging(Verbosity v) {
  g_verbosity = v;
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("speedrun", spdlog::sinks_init_list{console, tee_sink()});
  logger->set_pattern("%^%l%$: %v");
  // The tee's lines carry no colour: its own formatter (set_pattern above formats every sink).
  tee_sink()->set_formatter(TeeSink::plain_formatter());
  logger->set_level(v == Verbosity::quiet ? spdlog::level::warn
                    : v == Verbosity::verbose ? spdlog::level::debug
                                              : spdlog::level::info);
  spdlog::set_default_logger(logger);
}

Verbosity verbosity() { return g_verbosity; }

void set_log_tee(std::function<void(const std::string& line)> tee) { tee_sink()->set_tee(std::move(tee)); }

}  // namespace speedrun
