// Error types shared by every module.
//
// A UserError is a problem with something the user gave us (a config file, a key, a
// value, a data file, a directory). It carries a complete, human-readable message that
// names the offending file/key/value; main() prints it and exits with status 1. A
// std::bad_alloc is the machine's memory running out (an error, not a bug: the memory
// plans check the big allocations up front, but not every small one). Any other
// exception escaping main() is a bug and is reported as an internal error.
#pragma once

#include <new>
#include <stdexcept>
#include <string>

namespace speedrun {

class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What went wrong, for a run's record (compare's failed.json): the UserError's message,
// an out-of-memory sentence, or "internal error: <what>".
inline std::string failure_message(const std::exception& e) {
  if (dynamic_cast<const UserError*>(&e)) return e.what();
  if (dynamic_cast<const std::bad_alloc*>(&e))
    return std::string("out of memory: an allocation failed (") + e.what() +
           "); the model, train.micro_batch_seqs or the data need more memory than this machine has free";
  return std::string("internal error: ") + e.what();
}

// The line main() prints (and a run's log.txt records) for an exception that ends a
// command: "error: <message>", or "internal error: <what>" for a bug.
inline std::string failure_line(const std::exception& e) {
  std::string m = failure_message(e);
  return m.rfind("internal error: ", 0) == 0 ? m : "error: " + m;
}

}  // namespace speedrun
