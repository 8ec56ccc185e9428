#include "data/shard_set_writer.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"

namespace speedrun::data {

namespace fs = std::filesystem;

ShardSetWriter::ShardSetWriter(ShardSetOptions options)
    : options_(std::move(options)), filling_val_(options_.val_tokens > 0) {
  if (options_.shard_tokens < 1) throw UserError("shard size must be at least 1 token");
}

fs::path ShardSetWriter::shard_path(const ShardSetOptions& options, const std::string& split, int index) {
  char number[16];
  std::snprintf(number, sizeof number, "%06d", index);
  return options.dir / (options.prefix + "_" + split + "_" + number + ".bin");
}

std::vector<fs::path> ShardSetWriter::existing_shards(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() > prefix.size() + 5 && name.starts_with(prefix + "_") && name.ends_with(".bin"))
      found.push_back(it->path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

void ShardSetWriter::add_document(std::span<const uint16_t> tokens) {
  ++documents_;
  if (filling_val_) {
    val_.insert(val_.end(), tokens.begin(), tokens.end());
    ++val_documents_;
    if (static_cast<int64_t>(val_.size()) >= options_.val_tokens) filling_val_ = false;
    return;
  }
  if (!val_.empty()) write_val_shard();  // training starts: the val split is final
  add_training_tokens(tokens);
}

void ShardSetWriter::add_training_tokens(std::span<const uint16_t> tokens) {
  while (!tokens.empty()) {
    const size_t room = static_cast<size_t>(options_.shard_tokens) - train_.size();
    const size_t take = std::min(room, tokens.size());
    train_.insert(train_.end(), tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(take));
    tokens = tokens.subspan(take);
    if (static_cast<int64_t>(train_.size()) == options_.shard_tokens) write_train_shard();
  }
}

std::vector<ShardInfo> ShardSetWriter::finish() {
  if (options_.val_optional && !val_.empty() && train_.empty() && next_train_index_ == 1) {
    // Every document went to the val split (not written yet): train on them instead.
    filling_val_ = false;
    const std::vector<uint16_t> all = std::move(val_);
    val_.clear();
    add_training_tokens(all);
  }
  if (filling_val_)
    throw UserError("the validation split wants " + std::to_string(options_.val_tokens) + " tokens, but all " +
                    std::to_string(documents_) + " documents hold only " + std::to_string(val_.size()) +
                    ", so nothing would be left for training (lower --val-tokens)");
  if (!train_.empty()) write_train_shard();
  if (next_train_index_ == 1)
    throw UserError("the validation split takes all " + std::to_string(documents_) + " documents (" +
                    std::to_string(val_.size()) +
                    " tokens), so nothing is left for training (lower --val-tokens, or add documents)");
  return written_;
}

void ShardSetWriter::write_val_shard() {
  const fs::path path = shard_path(options_, "val", 0);
  write_shard(path, val_);
  written_.push_back({path, static_cast<int64_t>(val_.size())});
  val_.clear();
  val_.shrink_to_fit();
}

void ShardSetWriter::write_train_shard() {
  const fs::path path = shard_path(options_, "train", next_train_index_++);
  write_shard(path, train_);
  written_.push_back({path, static_cast<int64_t>(train_.size())});
  train_.clear();
}

}  // namespace speedrun::data
