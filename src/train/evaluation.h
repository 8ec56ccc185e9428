// The validation loss of a model on a validation set, computed as the trainer computes
// it at each validation: whole sequences in micro-batches of `micro_seqs`, each
// micro-batch's summed loss (Model::forward_loss) added in order in double. The trainer's
// validation calls it, so with the same parameters, sequences, micro-batch size, device,
// thread count and run position it gives the run's val_loss bit for bit (`speedrun eval`;
// tests/python/test_sample_eval.py checks it).
#pragma once

#include <cstdint>

#include "data/loader.h"
#include "model/model.h"

namespace speedrun::train {

struct ValSum {
  double loss_sum = 0.0;  // summed cross-entropy (nats) over every evaluated token
  int64_t tokens = 0;     // tokens evaluated: every token of every sequence of `val`
};

// val: inputs/targets of whole seq_len sequences (data::load_validation_set). `at`: the
// step the parameters are at and the run's train.steps (record26's attention window
// depends on it; it refuses steps == 0; track3 ignores it). Throws std::logic_error when
// val is not a whole number of sequences.
ValSum evaluate_loss(model::Model& model, const data::Batch& val, int64_t micro_seqs, int64_t seq_len,
                     model::RunPosition at);

}  // namespace speedrun::train
