// The Track 3 data loader (modded-nanogpt train_gpt_simple.py's
// distributed_data_generator), plus the validation set.
//
// Training: shards are read in sorted order, whole. Each step consumes a global batch
// of b tokens: rank r of R reads tokens[pos + r*b/R, pos + (r+1)*b/R + 1); inputs are
// all but the last of those tokens, targets all but the first; then pos += b. A new
// shard starts when pos + b + 1 >= the shard's length (the tail is skipped, as
// upstream). When the shards run out the run stops with an error, unless data.epochs
// allows another pass from the first shard.
//
// With align_to_bos (data.align_to_bos; record #26's loader, data/bos_align.h) each step
// reads b / seq_len sequences of seq_len (+1) tokens, each starting at a document start,
// found by upstream's find_batch_starts in the window tokens[pos, pos + 2b); rank r of R
// takes sequences [r*n, (r+1)*n), n = b / seq_len / R (with one sequence per rank, B = 1,
// this is upstream's "starts[rank]"; a single process reading 8 sequences through gradient
// accumulation reads the very tokens 8 upstream ranks read). pos then moves to the BOS that
// confirmed the last start. A new shard starts when pos + 2b + 1 >= the shard's length
// (upstream's max_batch_span = 2b). A window without enough document starts is a
// UserError naming the shard and position (upstream asserts).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/bos_align.h"
#include "data/shard.h"

namespace speedrun::data {

struct Batch {
  std::vector<int32_t> inputs;   // local tokens of this rank, row-major (seqs, seq_len)
  std::vector<int32_t> targets;  // the next token of each input
};

struct LoaderOptions {
  int64_t batch_tokens = 0;  // global b
  int rank = 0;
  int world = 1;
  int64_t vocab_size = 0;    // ids must be < this
  int64_t epochs = 1;
  std::string what = "data.train_glob";  // named in error messages
  bool align_to_bos = false;  // record #26's document-aligned sequences (above)
  int64_t seq_len = 0;        // tokens per sequence; used (and required >= 1) with align_to_bos
};

class TrainLoader {
 public:
  TrainLoader(std::vector<ShardInfo> shards, LoaderOptions opts);

  // Batches one pass over the shards yields (each shard contributes the number of
  // positions pos = 0, b, 2b, ... with pos + b + 1 < its length). With align_to_bos the
  // count depends on where documents start: until check_enough_for has scanned a whole
  // pass it is an upper bound (positions pos = 0, b, 2b, ... with pos + 2b + 1 < the
  // length: a step consumes at least b tokens); batches_per_epoch_exact() says which.
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  bool batches_per_epoch_exact() const { return batches_exact_; }

  // Tokens of one pass that are never an input: sum over shards of len - k*b, with k the
  // shard's batches (the whole shard when k = 0). A lower bound when the batch count is
  // an upper bound (align_to_bos before a whole pass was scanned).
  int64_t tokens_unread_per_epoch() const { return tokens_unread_per_epoch_; }

  // The fewest tokens a shard must hold for a batch: b + 2, or 2b + 2 with align_to_bos.
  int64_t min_shard_tokens() const { return search_span(opts_) + 2; }

  // The shards with no batch at all (fewer than min_shard_tokens()), in glob order.
  const std::vector<ShardInfo>& skipped_shards() const { return skipped_shards_; }

  // Throws UserError, before any training, when `steps` batches are more than the
  // data holds in data.epochs passes. With align_to_bos it reads the shards in order,
  // finding each batch as next() will, until `steps` batches are found or a pass ends
  // (then the pass's count is exact): too little data, or a window without enough
  // document starts, fails here rather than mid-run.
  void check_enough_for(int64_t steps);

  // The same checks as constructing a loader and check_enough_for(steps) (no shard holds
  // a batch; too few batches for `steps`), from the shards' headers alone: nothing is
  // read. For validate-config. With align_to_bos, from the upper bound above: data that
  // passes may still hold too few document-aligned batches (the run says so at start).
  static void check_data(const std::vector<ShardInfo>& shards, const LoaderOptions& opts, int64_t steps);

  // The next batch of this rank. Throws UserError when the data is exhausted.
  void next(Batch& out);

  // Where the loader stands between batches: what a checkpoint saves so that a resumed
  // run reads the batches the uninterrupted run would have read.
  struct Position {
    size_t shard = 0;            // index into the sorted shards
    int64_t offset = 0;          // global token offset of the next batch in that shard
    int64_t epoch = 1;           // 1-based pass over the shards
    int64_t batches_served = 0;  // batches read so far (error messages)
  };
  Position save_position() const { return {shard_, pos_, epoch_, batches_served_}; }
  // Continues from `p` (read from a checkpoint). Throws UserError naming `p`'s values when
  // they are not a place this loader can be (no such shard or epoch, offset past the
  // shard's end), e.g. because the shards changed since the checkpoint.
  void seek(const Position& p);
  // The file of shard `index` (checkpoints record the current one's name).
  const std::filesystem::path& shard_path(size_t index) const { return shards_.at(index).path; }

  int64_t epoch() const { return epoch_; }
  size_t shard_index() const { return shard_; }
  int64_t position() const { return pos_; }

 private:
  struct PassCount {
    int64_t batches = 0;        // batches one pass yields
    int64_t unread_tokens = 0;  // tokens of one pass that are never an input
    std::vector<ShardInfo> skipped;
  };
  // Throws UserError when no shard holds a batch.
  static PassCount count_pass(const std::vector<ShardInfo>& shards, const LoaderOptions& opts);
  static void check_passes(int64_t batches_per_epoch, bool exact, size_t shards, const LoaderOptions& opts,
                           int64_t steps);
  static void check_options(const LoaderOptions& opts);
  // The window a batch is read from: b, or 2b with align_to_bos (upstream's max_batch_span).
  static int64_t search_span(const LoaderOptions& opts) {
    return opts.align_to_bos ? 2 * opts.batch_tokens : opts.batch_tokens;
  }
  // The document-aligned starts of the batch at `pos` of `tokens` (shard `shard`) and the
  // tokens it consumes; throws UserError when the window holds too few document starts.
  AlignedStarts aligned_batch(const std::vector<uint16_t>& tokens, int64_t pos, size_t shard) const;
  void load_shard(size_t index);

  std::vector<ShardInfo> shards_;
  LoaderOptions opts_;
  int64_t local_tokens_ = 0;
  int64_t batches_per_epoch_ = 0;
  int64_t tokens_unread_per_epoch_ = 0;
  std::vector<ShardInfo> skipped_shards_;
  std::vector<uint16_t> tokens_;
  size_t shard_ = 0;
  int64_t pos_ = 0;
  int64_t epoch_ = 1;
  int64_t batches_served_ = 0;
  bool batches_exact_ = true;
};

// The validation set: the first `val_tokens` (+1 for the last target) tokens of the
// val shards (sorted; a shard too short continues into the next), cut into
// val_tokens / seq_len sequences; rank r of R gets sequences [n*r/R, n*(r+1)/R), so the
// ranks together hold every sequence exactly once (counts differ by at most one, and a
// rank may hold none when R > n). Summing the per-token losses over ranks and dividing
// by val_tokens is then the one-process value (upstream Track 3 instead asserts that
// val_tokens divides into equal per-rank batches). Throws UserError when val_tokens is
// not a positive multiple of seq_len or the shards hold fewer than val_tokens + 1 tokens.
Batch load_validation_set(const std::vector<ShardInfo>& shards, int64_t val_tokens, int64_t seq_len, int rank,
                          int world, int64_t vocab_size, const std::string& what = "data.val_glob");

}  // namespace speedrun::data
