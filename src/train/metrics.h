// Metrics as JSON lines (one object per line, flushed at once so that a crashed or
// killed run keeps everything up to its last step), plus the plain-text log. A
// non-finite number is written as null (nlohmann::json's dump does so): JSON has no
// NaN or Infinity, and every line must load in a strict parser.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace speedrun::train {

class LineFile {
 public:
  LineFile() = default;
  explicit LineFile(const std::filesystem::path& path) { open(path); }  // throws UserError
  void open(const std::filesystem::path& path);                          // appends; throws UserError
  ~LineFile();
  LineFile(const LineFile&) = delete;
  LineFile& operator=(const LineFile&) = delete;

  void write_line(const std::string& line);
  void write_json(const nlohmann::json& record) { write_line(record.dump()); }
  bool is_open() const { return file_ != nullptr; }

 private:
  std::FILE* file_ = nullptr;
  std::filesystem::path path_;
};

}  // namespace speedrun::train
