#include "data/loader.h"

#include <algorithm>

#include "core/error.h"

namespace speedrun::data {

static int64_t batches_in_shard(int64_t length, int64_t b, int64_t span) {
  // Positions pos = k*b, k >= 0, with pos + span + 1 < length (span = b: exact; span = 2b
  // with align_to_bos: an upper bound, each aligned step consuming at least b tokens).
  if (length < span + 2) return 0;
  return (length - span - 2) / b + 1;
}

TrainLoader::PassCount TrainLoader::count_pass(const std::vector<ShardInfo>& shards, const LoaderOptions& opts) {
  PassCount c;
  const int64_t span = search_span(opts);
  for (const ShardInfo& s : shards) {
    const int64_t k = batches_in_shard(s.num_tokens, opts.batch_tokens, span);
    c.batches += k;
    c.unread_tokens += s.num_tokens - k * opts.batch_tokens;
    if (k == 0) c.skipped.push_back(s);
  }
  if (c.batches == 0) {
    int64_t largest = 0;
    for (const ShardInfo& s : shards) largest = std::max(largest, s.num_tokens);
    throw UserError(opts.what + ": no shard holds more than " +
                    (opts.align_to_bos ? "2 x train.batch_tokens + 1 = " : "train.batch_tokens + 1 = ") +
                    std::to_string(span + 1) + " tokens" +
                    (opts.align_to_bos ? " (data.align_to_bos searches 2 x train.batch_tokens for document starts)"
                                       : "") +
                    " (the largest has " + std::to_string(largest) +
                    "); lower train.batch_tokens or use larger shards");
  }
  return c;
}

void TrainLoader::check_passes(int64_t batches_per_epoch, bool exact, size_t shards, const LoaderOptions& opts,
                               int64_t steps) {
  // Compared in passes, not batches: batches_per_epoch * epochs may overflow int64.
  const int64_t passes_needed = (steps + batches_per_epoch - 1) / batches_per_epoch;
  if (passes_needed > opts.epochs)
    throw UserError(opts.what + ": the run needs " + std::to_string(steps) + " batches of " +
                    std::to_string(opts.batch_tokens) + " tokens but " + std::to_string(shards) + " shard(s) yield " +
                    (exact ? "" : "at most ") + std::to_string(batches_per_epoch) +
                    (opts.align_to_bos ? " document-aligned batches" : "") + " per pass and data.epochs is " +
                    std::to_string(opts.epochs) + "; raise data.epochs to at least " +
                    std::to_string(passes_needed) + " or lower train.steps");
}

void TrainLoader::check_options(const LoaderOptions& opts) {
  if (opts.world < 1 || opts.rank < 0 || opts.rank >= opts.world) throw std::logic_error("bad rank/world");
  if (opts.batch_tokens % opts.world != 0)
    throw UserError("train.batch_tokens (" + std::to_string(opts.batch_tokens) +
                    ") must be divisible by the number of processes (" + std::to_string(opts.world) + ")");
  if (!opts.align_to_bos) return;
  if (opts.seq_len < 1) throw std::logic_error("align_to_bos needs seq_len >= 1");
  if (opts.batch_tokens % (opts.seq_len * opts.world) != 0)
    throw UserError("data.align_to_bos: train.batch_tokens (" + std::to_string(opts.batch_tokens) +
                    ") must be a multiple of processes x model.seq_len = " + std::to_string(opts.world) + " x " +
                    std::to_string(opts.seq_len) + ": every rank reads whole document-aligned sequences");
  if (opts.vocab_size > 0 && opts.vocab_size <= kEndOfText)
    throw UserError("data.align_to_bos: sequences start at the document token 50256, but model.vocab_size is " +
                    std::to_string(opts.vocab_size) + " (ids must be below it): the data cannot hold one");
}

void TrainLoader::check_data(const std::vector<ShardInfo>& shards, const LoaderOptions& opts, int64_t steps) {
  check_options(opts);
  check_passes(count_pass(shards, opts).batches, !opts.align_to_bos, shards.size(), opts, steps);
}

TrainLoader::TrainLoader(std::vector<ShardInfo> shards, LoaderOptions opts)
    : shards_(std::move(shards)), opts_(std::move(opts)) {
  check_options(opts_);
  local_tokens_ = opts_.batch_tokens / opts_.world;
  PassCount c = count_pass(shards_, opts_);
  batches_per_epoch_ = c.batches;
  tokens_unread_per_epoch_ = c.unread_tokens;
  skipped_shards_ = std::move(c.skipped);
  batches_exact_ = !opts_.align_to_bos;
  load_shard(0);
}

void TrainLoader::check_enough_for(int64_t steps) {
  if (opts_.align_to_bos && !batches_exact_) {
    // Walk the shards as next() will, without serving anything, until `steps` batches
    // are found or the pass ends (every pass is the same, so one pass decides).
    const int64_t span = search_span(opts_);
    int64_t found = 0, unread = 0;
    std::vector<ShardInfo> skipped;
    bool stopped = false;  // `steps` batches found before the pass ended
    // One shard in memory at a time, as the run's host memory plan counts: the loader's
    // own shard is let go during the scan and read again after it.
    const size_t held = shard_;
    std::vector<uint16_t>().swap(tokens_);
    std::vector<uint16_t> tokens;
    try {
      for (size_t k = 0; k < shards_.size() && !stopped; ++k) {
        std::vector<uint16_t>().swap(tokens);
        tokens = read_shard(shards_[k].path, opts_.vocab_size);
        const int64_t length = static_cast<int64_t>(tokens.size());
        int64_t pos = 0, in_shard = 0;
        while (pos + span + 1 < length) {
          if (found >= steps) {
            stopped = true;
            break;
          }
          pos += aligned_batch(tokens, pos, k).span;
          ++in_shard, ++found;
        }
        unread += length - in_shard * opts_.batch_tokens;
        if (in_shard == 0) skipped.push_back(shards_[k]);
      }
    } catch (const UserError&) {
      std::vector<uint16_t>().swap(tokens);
      tokens_ = read_shard(shards_[held].path, opts_.vocab_size);  // the loader stays usable
      throw;
    }
    if (!stopped) {
      // The whole pass was read: its count is exact.
      batches_per_epoch_ = found;
      tokens_unread_per_epoch_ = unread;
      skipped_shards_ = std::move(skipped);
      batches_exact_ = true;
    }
    std::vector<uint16_t>().swap(tokens);
    tokens_ = read_shard(shards_[held].path, opts_.vocab_size);  // pos_ and the counters are untouched
  }
  check_passes(batches_per_epoch_, batches_exact_, shards_.size(), opts_, steps);
}

AlignedStarts TrainLoader::aligned_batch(const std::vector<uint16_t>& tokens, int64_t pos, size_t shard) const {
  const int64_t count = opts_.batch_tokens / opts_.seq_len;
  std::optional<AlignedStarts> found =
      find_aligned_starts(tokens.data(), pos, pos + search_span(opts_), count, opts_.seq_len);
  if (!found)
    throw UserError(opts_.what + ": " + shards_[shard].path.string() + ": data.align_to_bos needs " +
                    std::to_string(count) + " document starts (token 50256) at least model.seq_len = " +
                    std::to_string(opts_.seq_len) + " tokens apart, and one more after them, within the " +
                    std::to_string(search_span(opts_)) + " tokens from position " + std::to_string(pos) +
                    " (2 x train.batch_tokens, upstream's search window), and found fewer: the documents there are "
                    "too long or not separated by 50256; turn data.align_to_bos off or use shards with document "
                    "starts");
  return *found;
}

void TrainLoader::load_shard(size_t index) {
  shard_ = index;
  pos_ = 0;
  tokens_ = read_shard(shards_[index].path, opts_.vocab_size);
}

void TrainLoader::seek(const Position& p) {
  if (p.shard >= shards_.size() || p.epoch < 1 || p.epoch > opts_.epochs || p.offset < 0 ||
      p.offset > shards_[p.shard].num_tokens || p.batches_served < 0)
    throw UserError(opts_.what + ": cannot continue at shard " + std::to_string(p.shard) + ", offset " +
                    std::to_string(p.offset) + ", epoch " + std::to_string(p.epoch) + ": there are " +
                    std::to_string(shards_.size()) + " shard(s) and data.epochs is " + std::to_string(opts_.epochs) +
                    " (did the training shards change since the checkpoint?)");
  if (p.shard != shard_) load_shard(p.shard);
  pos_ = p.offset;
  epoch_ = p.epoch;
  batches_served_ = p.batches_served;
}

void TrainLoader::next(Batch& out) {
  const int64_t b = opts_.batch_tokens;
  // Advance past shards whose remaining tokens cannot hold a batch (as upstream; a
  // shard too short for even one batch is skipped entirely).
  while (pos_ + search_span(opts_) + 1 >= static_cast<int64_t>(tokens_.size())) {
    size_t next = shard_ + 1;
    if (next == shards_.size()) {
      if (epoch_ >= opts_.epochs)
        throw UserError(opts_.what + ": training data exhausted after " + std::to_string(batches_served_) +
                        " batches (" + std::to_string(opts_.epochs) +
                        " pass(es) over the shards); raise data.epochs or lower train.steps");
      ++epoch_;
      next = 0;
    }
    load_shard(next);
  }
  if (opts_.align_to_bos) {
    const AlignedStarts a = aligned_batch(tokens_, pos_, shard_);
    const int64_t seq_len = opts_.seq_len, per_rank = local_tokens_ / seq_len;
    out.inputs.resize(static_cast<size_t>(local_tokens_));
    out.targets.resize(static_cast<size_t>(local_tokens_));
    for (int64_t j = 0; j < per_rank; ++j) {
      const int64_t start = a.starts[static_cast<size_t>(opts_.rank * per_rank + j)];
      for (int64_t i = 0; i < seq_len; ++i) {
        out.inputs[j * seq_len + i] = tokens_[start + i];
        out.targets[j * seq_len + i] = tokens_[start + i + 1];
      }
    }
    pos_ += a.span;
    ++batches_served_;
    return;
  }
  const int64_t start = pos_ + opts_.rank * local_tokens_;
  out.inputs.resize(static_cast<size_t>(local_tokens_));
  out.targets.resize(static_cast<size_t>(local_tokens_));
  for (int64_t i = 0; i < local_tokens_; ++i) {
    out.inputs[i] = tokens_[start + i];
    out.targets[i] = tokens_[start + i + 1];
  }
  pos_ += b;
  ++batches_served_;
}

Batch load_validation_set(const std::vector<ShardInfo>& shards, int64_t val_tokens, int64_t seq_len, int rank,
                          int world, int64_t vocab_size, const std::string& what) {
  if (world < 1 || rank < 0 || rank >= world) throw std::logic_error("bad rank/world");
  if (seq_len < 1 || val_tokens < seq_len || val_tokens % seq_len != 0)
    throw UserError("data.val_tokens (" + std::to_string(val_tokens) +
                    ") must be a positive multiple of model.seq_len (" + std::to_string(seq_len) + ")");
  const int64_t sequences = val_tokens / seq_len;
  const int64_t first = sequences * rank / world, last = sequences * (rank + 1) / world;
  const int64_t begin = first * seq_len;
  const int64_t end = last * seq_len + 1;  // one extra token: the last target
  int64_t available = 0;
  for (const ShardInfo& s : shards) available += s.num_tokens;
  if (available < val_tokens + 1)
    throw UserError(what + ": data.val_tokens is " + std::to_string(val_tokens) + " but the validation shards hold " +
                    std::to_string(available) + " tokens (need val_tokens + 1); lower data.val_tokens");
  if (first == last) return {};  // more ranks than sequences: this one evaluates nothing
  // Gather tokens [begin, end) of the concatenated shards.
  std::vector<uint16_t> slice;
  slice.reserve(static_cast<size_t>(end - begin));
  int64_t shard_start = 0;
  for (const ShardInfo& s : shards) {
    const int64_t shard_end = shard_start + s.num_tokens;
    const int64_t lo = std::max(begin, shard_start), hi = std::min(end, shard_end);
    if (lo < hi) {
      const std::vector<uint16_t> part = read_shard_tokens(s.path, lo - shard_start, hi - lo, vocab_size);
      slice.insert(slice.end(), part.begin(), part.end());
    }
    shard_start = shard_end;
    if (shard_start >= end) break;
  }
  Batch out;
  out.inputs.assign(slice.begin(), slice.end() - 1);
  out.targets.assign(slice.begin() + 1, slice.end());
  return out;
}

}  // namespace speedrun::data
