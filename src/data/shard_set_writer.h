// Writes a stream of tokenized documents as a set of shards laid out like FineWeb for
// modded-nanogpt: DIR/<prefix>_val_000000.bin holds the first whole documents until it
// has at least `val_tokens` tokens (no val shard when val_tokens is 0); the rest fill
// DIR/<prefix>_train_000001.bin, _000002, ... with at most `shard_tokens` tokens each,
// a document continuing into the next shard where one fills up.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "data/shard.h"

namespace speedrun::data {

struct ShardSetOptions {
  std::filesystem::path dir;
  std::string prefix;
  int64_t shard_tokens = 100'000'000;
  int64_t val_tokens = 0;
  // When the val split would take every document (a one-document corpus), write them all
  // as training shards and no val shard instead of failing (finish() then returns no
  // val shard; the caller says so). For a split the user did not ask for by number.
  bool val_optional = false;
};

class ShardSetWriter {
 public:
  explicit ShardSetWriter(ShardSetOptions options);

  // Adds one document (its <|endoftext|> separator included). Writes every shard that
  // fills up; the val shard is written once the first training token arrives.
  void add_document(std::span<const uint16_t> tokens);

  // Writes the last, partial training shard and returns all shards written, in order.
  // Throws UserError when nothing is left for training after the val split.
  std::vector<ShardInfo> finish();

  // DIR/<prefix>_<split>_<index, 6 digits>.bin
  static std::filesystem::path shard_path(const ShardSetOptions& options, const std::string& split, int index);

  // The files DIR/<prefix>_*.bin that already exist, sorted.
  static std::vector<std::filesystem::path> existing_shards(const std::filesystem::path& dir,
                                                            const std::string& prefix);

 private:
  void write_val_shard();
  void write_train_shard();
  void add_training_tokens(std::span<const uint16_t> tokens);

  ShardSetOptions options_;
  bool filling_val_;
  int64_t documents_ = 0;
  int64_t val_documents_ = 0;
  std::vector<uint16_t> val_;
  std::vector<uint16_t> train_;
  int next_train_index_ = 1;
  std::vector<ShardInfo> written_;
};

}  // namespace speedrun::data
