// GPT-2 pre-tokenization: splits text into the pieces that the original regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// finds (leftmost alternative wins at each position), by a hand-written scanner.
// Input is raw bytes: a byte that does not start well-formed UTF-8 counts as one
// character that is neither letter, number nor whitespace, so the pieces always
// cover the input exactly.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace speedrun::data {

class Pretokenizer {
 public:
  explicit Pretokenizer(std::string_view text) : text_(text) {}

  // The next piece (never empty), or an empty view once the text is used up.
  std::string_view next();

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

// All pieces of `text`, in order (for tests and tools; encode() streams them).
std::vector<std::string_view> pretokenize(std::string_view text);

// True when text may be cut before byte `pos` such that pre-tokenizing the two parts
// separately gives exactly the pieces of the whole: 0 < pos < size, text[pos] is a
// space and text[pos - 1] is an ASCII character that is not whitespace. (The proof is
// in pretokenize.cpp.)
bool is_safe_split_point(std::string_view text, size_t pos);

// The first safe split point at or after `from`, or text.size() when there is none.
size_t find_safe_split_point(std::string_view text, size_t from);

}  // namespace speedrun::data
