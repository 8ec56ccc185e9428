#include "train/metrics.h"

#include <cerrno>

#include "core/error.h"
#include "core/files.h"

namespace speedrun::train {

void LineFile::open(const std::filesystem::path& path) {
  if (file_) std::fclose(file_);
  path_ = path;
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) throw UserError("cannot write " + path.string() + ": " + errno_string(errno));
}

LineFile::~LineFile() {
  if (file_) std::fclose(file_);
}

void LineFile::write_line(const std::string& line) {
  if (!file_) return;
  if (std::fputs(line.c_str(), file_) < 0 || std::fputc('\n', file_) == EOF || std::fflush(file_) != 0)
    throw UserError("cannot write " + path_.string() + ": " + errno_string(errno));
}

}  // namespace speedrun::train
