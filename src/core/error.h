// Error types shared by every module.
//
// A UserError is a problem with something the user gave us (a config file, a key, a
// value, a data file, a directory). It carries a complete, human-readable message that
// names the offending file/key/value; main() prints it and exits with status 1. Any
// other exception escaping main() is a bug and is reported as an internal error.
#pragma once

#include <stdexcept>
#include <string>

namespace speedrun {

class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace speedrun
