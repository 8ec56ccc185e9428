// Whether the configs of a comparison can be compared at all, and what the reader needs to
// compare them fairly when their models differ (model.arch track3 vs record26, or other
// sizes): each config's architecture, parameter count and FLOPs per token.
//
// Validation losses are comparable across models only when they are measured on the same
// tokens: the loss is the mean cross-entropy of the targets 1..data.val_tokens of the
// concatenated validation shards (data/loader.h load_validation_set), whatever model.seq_len
// cuts them into. So the comparison refuses configs whose evaluated validation tokens differ
// (another data.val_glob, another data.val_tokens, or the same relative glob resolving to
// other files because the configs live in other directories), and configs that train on
// different data (their training shards differ).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compare/run_plan.h"

namespace speedrun::compare {

struct ModelFacts {
  std::string arch;           // model.arch
  int64_t parameters = 0;     // every trained parameter (the model's ParamLayout)
  int64_t matmul_params = 0;  // the ones in matrix products (model/flops.h)
  double flops_per_token = 0;  // forward + backward, model/flops.h
};
ModelFacts model_facts(const config::RunConfig& cfg);

// What a config's data are, as far as a comparison cares.
struct DataFingerprint {
  bool readable = false;  // false: the shards could not be read (the runs fail, naming why)
  std::string val;        // FNV-1a of the val_tokens + 1 evaluated tokens (16 hex digits)
  std::string train;      // FNV-1a of each training shard's token count and first 65,536 tokens
  int64_t val_shards = 0, train_shards = 0;
};
// Reads the validation tokens the runs evaluate (data.val_tokens + 1 of them: up to 20 MiB for
// Track 3) and the start of every training shard. Never throws for unreadable data: those
// configs' runs fail on their own, each naming the problem, as before this check.
DataFingerprint data_fingerprint(const config::RunConfig& cfg);

// Throws UserError naming every config (label, file, data.val_glob, data.val_tokens, or
// data.train_glob) whose validation tokens or training data differ from the first readable
// config's: their losses cannot be compared. Configs whose data cannot be read are skipped.
void check_comparable(const std::vector<ComparedConfig>& configs, const std::vector<DataFingerprint>& data);

}  // namespace speedrun::compare
