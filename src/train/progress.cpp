#include "train/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <utility>

#include <spdlog/fmt/fmt.h>

namespace speedrun::train {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt::format("{:.1f}s", s);
  const auto total = static_cast<int64_t>(s + 0.5);
  if (total < 3600) return fmt::format("{}m{:02d}s", total / 60, static_cast<int>(total % 60));
  return fmt::format("{}h{:02d}m", total / 3600, static_cast<int>((total % 3600) / 60));
}

bool stdout_is_user_terminal(bool under_launcher) { return !under_launcher && ::isatty(STDOUT_FILENO) == 1; }

Progress::Progress(bool enabled, bool live, LogLine log) : enabled_(enabled), live_(live), log_(std::move(log)) {}

Progress::~Progress() { finish(); }

void Progress::line(const std::string& text) {
  if (live_shown_) std::fputs("\r\033[2K", stdout);
  live_shown_ = false;
  std::fputs(text.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (log_) log_(text);
}

void Progress::update(int64_t step, int64_t steps, double train_loss, double train_time_s, double tokens_per_s,
                      double eta_s) {
  if (!enabled_) return;
  std::string text =
      fmt::format("step:{}/{} train_loss:{:.4f} train_time:{:.3f}s step_avg:{:.2f}ms tokens/s:{:.0f} eta:{}", step,
                  steps, train_loss, train_time_s, 1000.0 * train_time_s / static_cast<double>(step), tokens_per_s,
                  format_duration(eta_s));
  if (!label_.empty()) text = label_ + " " + text;
  if (eta_after_s_ >= 0) text += " all:" + format_duration(eta_s + eta_after_s_);
  const auto now = std::chrono::steady_clock::now();
  const bool plain = !plain_shown_ || step == steps ||
                     std::chrono::duration<double>(now - last_plain_).count() >= kPlainLineSeconds;
  if (plain) {
    plain_shown_ = true;
    last_plain_ = now;
    if (log_) log_(text);
  }
  if (live_) {
    std::fputs("\r\033[2K", stdout);
    std::fputs(text.c_str(), stdout);
    live_shown_ = true;
  } else if (plain) {
    std::fputs(text.c_str(), stdout);
    std::fputc('\n', stdout);
  }
  std::fflush(stdout);
}

void Progress::set_context(std::string label, double eta_after_s) {
  label_ = std::move(label);
  eta_after_s_ = eta_after_s;
}

void Progress::finish() {
  if (live_shown_) std::fputc('\n', stdout);
  live_shown_ = false;
  std::fflush(stdout);
}

}  // namespace speedrun::train
