#include "train/run_log.h"

#include "core/error.h"
#include "core/log.h"

namespace speedrun::train {

RunLog::RunLog(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
  set_log_tee([this](const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex_);
    // The logger cannot take an exception: keep the failure for the next line().
    try {
      append(text);
    } catch (const UserError& e) {
      if (write_error_.empty()) write_error_ = e.what();
    }
  });
}

RunLog::~RunLog() {
  if (enabled_) set_log_tee({});
}

void RunLog::append(const std::string& text) {
  if (file_.is_open()) file_.write_line(text);
  else pending_.push_back(text);
}

void RunLog::open(const std::filesystem::path& path, const std::string& header) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  file_.open(path);
  lock_.lock(path);
  file_.write_line(header);
  for (const std::string& text : pending_) file_.write_line(text);
  pending_.clear();
}

void RunLog::line(const std::string& text) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!write_error_.empty()) throw UserError(write_error_);
  append(text);
}

void RunLog::sync() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!write_error_.empty()) throw UserError(write_error_);
  file_.sync();
}

}  // namespace speedrun::train
