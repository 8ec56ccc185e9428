// The GPT-2 byte-level BPE tokenizer ("r50k_base"), compatible with OpenAI's
// encoder.py and tiktoken's encode_ordinary:
//   1. pre-tokenization splits the text with GPT-2's regex (pretokenize.h);
//   2. each piece's bytes become single-byte token ids, which are merged pairwise,
//      lowest-ranked merge first (bpe.h); repeated pieces come from a per-thread cache.
// encode() takes raw bytes: the text "<|endoftext|>" is plain text, and invalid UTF-8
// is fine, so decode(encode(x)) == x for every byte string x.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/bpe.h"

namespace speedrun::data {

class Gpt2Tokenizer {
 public:
  // Reads and validates encoder.json and vocab.bpe (see bpe_vocabulary.h); every
  // problem is a UserError naming the file.
  static Gpt2Tokenizer load(const std::filesystem::path& encoder_json, const std::filesystem::path& vocab_bpe);

  // load() with the files that find_default_tokenizer_files() finds.
  static Gpt2Tokenizer load_default();

  std::vector<uint16_t> encode(std::string_view text) const;

  // Appends the ids of `text` to `out` (no separator). Thread-safe: concurrent calls
  // share nothing mutable but each thread's piece cache.
  void encode_append(std::string_view text, std::vector<uint16_t>& out) const;

  // Throws UserError for an id that is not below vocab_size().
  std::string decode(std::span<const uint16_t> ids) const;

  size_t vocab_size() const { return token_bytes_.size(); }
  size_t num_merges() const { return merges_.size(); }
  std::optional<uint16_t> end_of_text() const { return end_of_text_; }
  const std::string& token_bytes(uint16_t id) const { return token_bytes_.at(id); }

 private:
  Gpt2Tokenizer() = default;

  std::vector<std::string> token_bytes_;  // by id
  uint16_t byte_token_[256] = {};         // id of each single-byte token
  MergeTable merges_;
  std::optional<uint16_t> end_of_text_;
  // Distinguishes tokenizers for the thread-local piece caches (an address could be
  // reused by a later tokenizer with other files).
  uint64_t serial_ = 0;
};

}  // namespace speedrun::data
