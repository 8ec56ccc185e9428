#include "train/evaluation.h"

#include <algorithm>
#include <stdexcept>

namespace speedrun::train {

ValSum evaluate_loss(model::Model& model, const data::Batch& val, int64_t micro_seqs, int64_t seq_len,
                     model::RunPosition at) {
  const int64_t seqs = static_cast<int64_t>(val.inputs.size()) / seq_len;
  if (seqs * seq_len != static_cast<int64_t>(val.inputs.size()))
    throw std::logic_error("validation slice is not a whole number of sequences");
  ValSum out;
  for (int64_t s = 0; s < seqs; s += micro_seqs) {
    const int64_t b = std::min(micro_seqs, seqs - s);
    out.loss_sum += model.forward_loss(val.inputs.data() + s * seq_len, val.targets.data() + s * seq_len, b, at);
    out.tokens += b * seq_len;
  }
  return out;
}

}  // namespace speedrun::train
