// The validation loss of a model on a validation set, computed as the trainer computes
// it at each validation: whole sequences in micro-batches of `micro_seqs`, each
// micro-batch's summed loss (Gpt::forward_loss) added in order in double. With the same
// parameters, sequences, micro-batch size, device and thread count it gives the run's
// val_loss bit for bit (`speedrun eval`; tests/python/test_sample_eval.py checks it).
// NOTE: train/trainer.cpp has its own copy of this loop (evaluate()); the two must stay
// the same computation (the eval test fails otherwise) until the trainer uses this one.
#pragma once

#include <cstdint>

#include "data/loader.h"
#include "model/gpt.h"

namespace speedrun::train {

struct ValSum {
  double loss_sum = 0.0;  // summed cross-entropy (nats) over every evaluated token
  int64_t tokens = 0;     // tokens evaluated: every token of every sequence of `val`
};

// val: inputs/targets of whole seq_len sequences (data::load_validation_set). Throws
// std::logic_error when val is not a whole number of sequences.
ValSum evaluate_loss(model::Gpt& model, const data::Batch& val, int64_t micro_seqs, int64_t seq_len);

}  // namespace speedrun::train
