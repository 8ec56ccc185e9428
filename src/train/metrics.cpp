#include "train/metrics.h"

namespace speedrun::train {

void LineFile::open(const std::filesystem::path& path) { file_.open(path); }

void LineFile::write_line(const std::string& line) {
  if (file_.is_open()) file_.append_line(line);
}

}  // namespace speedrun::train
