// The learning-rate factor over steps (Track 3: stable, then linear cooldown), with an
// optional linear warm-up (the Adam baseline) and a floor (record #26 ends at 0.1).
#pragma once

#include <cstdint>

#include "config/run_config.h"

namespace speedrun::optim {

// progress = step / steps; eta = 1 while progress < 1 - cooldown_frac, else
// min + (1 - min) * (1 - progress) / cooldown_frac; times min(1, (step+1)/warmup).
double lr_factor(const config::ScheduleConfig& s, int64_t step, int64_t steps);

}  // namespace speedrun::optim
