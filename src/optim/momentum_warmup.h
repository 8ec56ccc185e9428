// The momentum warm-up of speedrun track 1 (record #26, KellerJordan/modded-nanogpt
// train_gpt.py at commit 345b2fb, the training loop):
//     frac = min(step / 300, 1)  # momentum warmup for muon
//     group["momentum"] = (1 - frac) * 0.85 + frac * 0.95
// set before the optimizer step of training step `step` (0-based), so step 0 uses 0.85 and
// every step from 300 on 0.95. Shared by Muon, Newton-Muon and RMNP (an extension there).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

namespace speedrun::optim {

// The momentum of 0-based step `step`: `momentum` when there is no warm-up (start unset
// or steps <= 0), else (1 - f) start + f momentum with f = min(step / steps, 1), in double.
inline double warmed_up_momentum(double momentum, const std::optional<double>& start, int64_t steps, int64_t step) {
  if (!start || steps <= 0) return momentum;
  const double frac = std::min(1.0, static_cast<double>(step) / static_cast<double>(steps));
  return (1.0 - frac) * *start + frac * momentum;
}

}  // namespace speedrun::optim
