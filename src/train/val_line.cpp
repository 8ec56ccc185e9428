#include "train/val_line.h"

#include <algorithm>
#include <stdexcept>

#include <spdlog/fmt/fmt.h>

namespace speedrun::train {

std::string format_val_line_track3(const ValLineFields& f) {
  // At step 0 the step average is NaN, which fmt prints "nan" as Python's format does.
  return fmt::format("step:{}/{} val_loss:{:.5f} train_time:{:.3f}s step_avg:{:.2f}ms", f.step, f.steps, f.val_loss,
                     f.train_time_s, f.interval_step_avg_ms);
}

std::string format_val_line_record26(const ValLineFields& f) {
  const double ms = 1000.0 * f.train_time_s;
  return fmt::format("step:{}/{} val_loss:{:.4f} train_time:{:.0f}ms step_avg:{:.2f}ms", f.step, f.steps, f.val_loss, ms,
                     ms / static_cast<double>(std::max<int64_t>(f.step, 1)));
}

ValLineFormat val_line_format(std::string_view architecture) {
  if (architecture == "track3") return format_val_line_track3;
  if (architecture == "record26") return format_val_line_record26;
  throw std::invalid_argument("no validation-line format for architecture '" + std::string(architecture) + "'");
}

}  // namespace speedrun::train
