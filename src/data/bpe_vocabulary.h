// Reading GPT-2 style tokenizer files, with every problem reported as a UserError that
// names the file and what is wrong:
//   encoder.json - a JSON object from token string (in the byte-level alphabet, see
//                  byte_unicode.h) to id; the ids are exactly 0..N-1;
//   vocab.bpe    - a "#version ..." line, then one merge "LEFT RIGHT" per line in rank
//                  order; both parts and their concatenation are tokens.
// Consistency: N = 256 single-byte tokens + one token per merge + <|endoftext|> (when
// present, id 50256, the shards' document separator). GPT-2: 50257 tokens, 50000 merges.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace speedrun::data {

inline constexpr const char* kEndOfTextToken = "<|endoftext|>";

struct BpeVocabulary {
  struct Merge {
    uint16_t left;
    uint16_t right;
    uint16_t merged;
  };
  std::vector<std::string> token_bytes;  // raw bytes of each token, indexed by id
  std::vector<Merge> merges;             // in rank order (rank = index)
  std::optional<uint16_t> end_of_text;   // id of <|endoftext|>, when present
};

BpeVocabulary read_bpe_vocabulary(const std::filesystem::path& encoder_json, const std::filesystem::path& vocab_bpe);

}  // namespace speedrun::data
