#include "optim/schedule.h"

#include <algorithm>

namespace speedrun::optim {

double lr_factor(const config::ScheduleConfig& s, int64_t step, int64_t steps) {
  const double progress = static_cast<double>(step) / static_cast<double>(steps);
  double eta = 1.0;
  if (s.cooldown_frac > 0.0 && progress >= 1.0 - s.cooldown_frac) {
    const double w = (1.0 - progress) / s.cooldown_frac;
    eta = w + (1.0 - w) * s.min_factor;
  }
  if (s.warmup_steps > 0) eta *= std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps));
  return eta;
}

}  // namespace speedrun::optim
