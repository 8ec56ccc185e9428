// A run's log.txt: everything the console showed during the run, as plain lines — the
// info lines and warnings (through the logger's tee, core/log.h), the progress and
// validation lines, the final status, and the error that ended a failed run — so that
// a run leaves its story, and a failed run its reason, on disk.
//
// While the log is open the process holds a WriterLock on log.txt (core/file_lock.h), so
// that `speedrun runs` can tell a run still going from one whose process is gone.
//
// Lines that come before the run directory exists (the memory plan, the data summary)
// are kept and written first when open() is called. Only the rank that writes the run
// directory keeps a log; on the others every call does nothing.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "core/file_lock.h"
#include "train/metrics.h"

namespace speedrun::train {

class RunLog {
 public:
  // Starts capturing the logger's messages (when enabled).
  explicit RunLog(bool enabled);
  ~RunLog();  // stops capturing
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  // Creates or appends to `path`, writes `header` and then the lines kept so far.
  // Throws UserError.
  void open(const std::filesystem::path& path, const std::string& header);
  // One line as the console showed it (without its newline). Throws UserError when
  // log.txt cannot be written (also for a failure met by an earlier logger message).
  void line(const std::string& text);
  // Flushes log.txt to disk (fsync); a failure throws UserError naming the file.
  void sync();
  bool enabled() const { return enabled_; }

 private:
  void append(const std::string& text);  // under mutex_

  bool enabled_;
  std::mutex mutex_;  // the logger's tee may call from another thread
  LineFile file_;
  WriterLock lock_;  // on log.txt, for the process's lifetime
  std::vector<std::string> pending_;  // before open()
  std::string write_error_;           // a failed write from the tee, reported by the next line()
};

}  // namespace speedrun::train
