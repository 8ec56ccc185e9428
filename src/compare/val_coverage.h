// Whether a run validates often enough for a comparison: its curve needs a few points to
// be drawn, and the step at the target is only known to the spacing of its validations.
// Checked before anything runs, so that a comparison is not spent on runs that cannot
// show what it is for.
#pragma once

#include <cstdint>
#include <string>

#include "config/run_config.h"

namespace speedrun::compare {

// Fewer validations than this after step 0 draw no useful curve.
inline constexpr int64_t kMinValidationsAfterStart = 3;

// The validations a run makes after step 0, counted as the trainer schedules them
// (train/trainer.h): every val_every steps while step/steps < 1 - val_final_frac, every
// val_every_final steps after, and at the last step. Exact for any steps (no loop).
int64_t validations_after_start(const config::TrainConfig& t);

// A warning naming the config, what its validations are and the setting to change
// ("--set train.val_every=N"), or "" when it validates often enough.
std::string too_few_validations_warning(const std::string& label, const config::TrainConfig& t);

}  // namespace speedrun::compare
