// "Is the process that writes this file still alive?" — answered with an advisory lock
// (flock(2)): the writer holds an exclusive lock on the file while it works, and the
// kernel drops it when the process ends, however it ends (an error, kill -9, a crash).
// `speedrun train` holds one on its run's log.txt, so `speedrun runs` can tell a run
// that is still going from one whose process is gone (killed, or its machine rebooted).
// Advisory only: nothing stops a reader from reading. On a network file system without
// flock support the lock may not be seen from other hosts.
#pragma once

#include <filesystem>

namespace speedrun {

class WriterLock {
 public:
  WriterLock() = default;
  ~WriterLock();  // releases the lock
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

  // Locks `path` (which must exist) exclusively for this process's lifetime, waiting for
  // a reader's momentary probe. Best effort: returns false (and holds nothing) when the
  // file cannot be opened or locked; the writer works on regardless.
  bool lock(const std::filesystem::path& path);

 private:
  int fd_ = -1;
};

// True when another live process holds a WriterLock on `path`; false when none does or
// the file cannot be opened.
bool held_by_a_writer(const std::filesystem::path& path);

}  // namespace speedrun
