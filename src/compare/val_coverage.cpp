#include "compare/val_coverage.h"

#include <algorithm>
#include <cmath>

#include <spdlog/fmt/fmt.h>

namespace speedrun::compare {

int64_t validations_after_start(const config::TrainConfig& t) {
  // The trainer validates at step s < steps when s % f == 0, f = val_every while
  // s/steps < 1 - val_final_frac (in double), else val_every_final; and at s = steps.
  // cut: the first step of the final phase, found with the trainer's own comparison.
  const double steps = static_cast<double>(t.steps);
  int64_t cut = static_cast<int64_t>(std::ceil((1.0 - t.val_final_frac) * steps));
  cut = std::clamp<int64_t>(cut, 0, t.steps);
  while (cut > 0 && static_cast<double>(cut - 1) / steps >= 1.0 - t.val_final_frac) --cut;
  while (cut < t.steps && static_cast<double>(cut) / steps < 1.0 - t.val_final_frac) ++cut;
  // Multiples of val_every in [1, cut - 1], of val_every_final in [max(cut, 1), steps - 1].
  const int64_t early = cut > 1 ? (cut - 1) / t.val_every : 0;
  const int64_t from = std::max<int64_t>(cut, 1);
  const int64_t late = t.steps - 1 >= from ? (t.steps - 1) / t.val_every_final - (from - 1) / t.val_every_final : 0;
  return early + late + 1;  // + the last step
}

std::string too_few_validations_warning(const std::string& label, const config::TrainConfig& t) {
  const int64_t n = validations_after_start(t);
  if (n >= kMinValidationsAfterStart) return "";
  const int64_t suggested = std::max<int64_t>(1, t.steps / 5);
  return fmt::format("{}: only {} validation(s) after step 0 (train.steps {}, train.val_every {}, "
                     "train.val_every_final {} in the last {:g} of the run): too few to draw a curve or to place the "
                     "step at the target; validate more often, e.g. --set train.val_every={} --set "
                     "train.val_every_final={}",
                     label, n, t.steps, t.val_every, t.val_every_final, t.val_final_frac, suggested, suggested);
}

}  // namespace speedrun::compare
