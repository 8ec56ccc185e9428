// SIGINT and SIGTERM during a training run: the first one asks the run to stop after
// the step in progress (the trainer then writes a checkpoint and the summary, status
// "interrupted", and exits with 128 + the signal's number); the handler is then reset
// to the default, so a second Ctrl-C ends the process at once.
#pragma once

namespace speedrun::train {

class StopSignals {
 public:
  StopSignals();   // installs the handlers
  ~StopSignals();  // restores the previous ones
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The signal received so far (SIGINT or SIGTERM), or 0.
  static int received();
};

}  // namespace speedrun::train
