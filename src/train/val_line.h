// The console's validation line, in the format of the upstream script whose
// architecture the run trains, so that scripts written for upstream logs read ours.
//
//   track3 (records/track_3_optimization/train_gpt_simple.py in KellerJordan/modded-nanogpt):
//     step:{step}/{steps} val_loss:{:.5f} train_time:{:.3f}s step_avg:{:.2f}ms
//     step_avg: the mean step time since the previous validation; "nan" at step 0.
//
//   record26 (Track 1, train_gpt.py at 345b2fb):
//     step:{step}/{steps} val_loss:{:.4f} train_time:{ms:.0f}ms step_avg:{total_ms/max(step,1):.2f}ms
//     step_avg: the mean step time over the whole run so far.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace speedrun::train {

// What a validation line may show; each format picks its fields.
struct ValLineFields {
  int64_t step = 0;           // the validated step (0 before any training)
  int64_t steps = 0;          // the run's train.steps
  double val_loss = 0.0;      // mean loss per validation token (nats)
  double train_time_s = 0.0;  // training time so far, validations excluded (seconds)
  double interval_step_avg_ms = 0.0;  // mean step time since the previous validation (ms); NaN at step 0
};

using ValLineFormat = std::string (*)(const ValLineFields&);

// Track 3's train_gpt_simple.py line and record #26's train_gpt.py line (see above).
std::string format_val_line_track3(const ValLineFields& f);
std::string format_val_line_record26(const ValLineFields& f);

// The format of `architecture`'s upstream script ("track3", "record26"). Throws std::invalid_argument for an architecture without one (a bug: every
// architecture registers its format).
ValLineFormat val_line_format(std::string_view architecture);

}  // namespace speedrun::train
