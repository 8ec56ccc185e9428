// Console output of a run. Validation lines use modded-nanogpt's exact form
//   step:N/M val_loss:X train_time:Ys step_avg:Zms
// so that scripts written for upstream logs read ours. Between them, a live progress
// line (step, train loss, tokens/s, ETA) is redrawn in place on a terminal, or printed
// as a plain line per step when stdout is a file or a pipe.
#pragma once

#include <cstdint>
#include <string>

namespace speedrun::train {

class Progress {
 public:
  explicit Progress(bool enabled);
  // A permanent line (validation results, summaries).
  void line(const std::string& text);
  // The live line for `step` (1-based, of `steps`).
  void update(int64_t step, int64_t steps, double train_loss, double train_time_s, double tokens_per_s,
              double eta_s);
  void finish();
  // Several runs in one command (speedrun compare): `label` goes before the live line,
  // and `eta_after_s` (the estimated time of the runs still to come after this one;
  // negative: unknown) is added to the run's ETA as the whole command's.
  void set_context(std::string label, double eta_after_s);

 private:
  bool enabled_;
  std::string label_;
  double eta_after_s_ = -1.0;
  bool tty_;
  bool live_shown_ = false;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"

}  // namespace speedrun::train
