// Console output of a run. Validation lines use the upstream script's exact form
// (train/val_line.h), so that scripts written for upstream logs read ours. Between
// them, a progress line (step, train loss, tokens/s, ETA):
// - live: redrawn in place ("\r\033[2K", no newline) on every step, only when stdout is
//   the user's terminal;
// - plain: otherwise (a file, a pipe, or any rank under mpirun, whose stdout is the
//   launcher's pseudo-terminal even when mpirun's own output goes to a file): one full
//   line at the first step, the last, and at most every kPlainLineSeconds between.
// Every permanent line and every plain progress line is also handed to the log
// callback (the run's log.txt), whichever way the console shows them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace speedrun::train {

// True when stdout is a terminal the user watches: isatty(stdout), and not under an MPI
// launcher (which gives each rank a pseudo-terminal whatever mpirun's stdout is).
bool stdout_is_user_terminal(bool under_launcher);

class Progress {
 public:
  // Seconds between two plain progress lines (besides the first and the last step).
  static constexpr double kPlainLineSeconds = 10.0;
  using LogLine = std::function<void(const std::string&)>;

  // enabled: show progress lines at all (validation lines always show). live: redraw in
  // place (stdout_is_user_terminal). log: receives every line shown as a plain line.
  Progress(bool enabled, bool live, LogLine log = {});
  ~Progress();  // finish()
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // A permanent line (validation results): replaces a live line, ends with a newline.
  void line(const std::string& text);
  // The progress of `step` (1-based, of `steps`).
  void update(int64_t step, int64_t steps, double train_loss, double train_time_s, double tokens_per_s,
              double eta_s);
  // Ends a live line with its newline (also on the way out of a failed run, so that the
  // error message starts on its own line).
  void finish();
  // Several runs in one command (speedrun compare): `label` goes before the progress line,
  // and `eta_after_s` (the estimated time of the runs still to come after this one;
  // negative: unknown) is added to the run's ETA as the whole command's.
  void set_context(std::string label, double eta_after_s);

 private:
  bool enabled_;
  bool live_;
  LogLine log_;
  std::string label_;
  double eta_after_s_ = -1.0;
  bool live_shown_ = false;
  bool plain_shown_ = false;
  std::chrono::steady_clock::time_point last_plain_{};
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"

}  // namespace speedrun::train
