// Metrics as JSON lines (one object per line, written at once so that a crashed or
// killed run keeps everything up to its last step), plus the plain-text log. Each line
// is one checked write (core/files.h AppendFile): a write error (a full disk) throws
// UserError naming the file, and the file keeps whole lines only. A non-finite number is
// written as null (nlohmann::json's dump does so): JSON has no NaN or Infinity, and every
// line must load in a strict parser.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "core/files.h"

namespace speedrun::train {

class LineFile {
 public:
  LineFile() = default;
  explicit LineFile(const std::filesystem::path& path) { open(path); }  // throws UserError
  void open(const std::filesystem::path& path);                          // appends; throws UserError
  LineFile(const LineFile&) = delete;
  LineFile& operator=(const LineFile&) = delete;

  void write_line(const std::string& line);
  void write_json(const nlohmann::json& record) { write_line(record.dump()); }
  bool is_open() const { return file_.is_open(); }
  void sync() { file_.sync(); }  // fsync what was written; throws UserError

 private:
  AppendFile file_;
};

}  // namespace speedrun::train
