// The classes of characters that GPT-2's pre-tokenization regex distinguishes:
// letters (\p{L}), numbers (\p{N}), whitespace (\s) and everything else.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "data/utf8.h"

namespace speedrun::data {

enum class CharClass : uint8_t { other, letter, number, whitespace };

// One character of the input: its class and its length in bytes. A byte that does not
// start well-formed UTF-8 is a character of its own, of class `other` (neither letter,
// number nor whitespace), so any byte string can be tokenized and decoded back.
struct Char {
  CharClass cls;
  int length;
};

class CharClassifier {
 public:
  // The shared instance (tables are built on first use; thread-safe).
  static const CharClassifier& instance();

  CharClass of_code_point(uint32_t cp) const {
    if (cp < bmp_.size()) return bmp_[cp];
    return of_supplementary(cp);
  }

  // The character starting at p (p < end).
  Char at(const unsigned char* p, const unsigned char* end) const {
    if (*p < 0x80) return {bmp_[*p], 1};
    uint32_t cp = 0;
    const int length = decode_utf8(p, end, &cp);
    if (length == 0) return {CharClass::other, 1};
    return {of_code_point(cp), length};
  }

  // Class of an ASCII byte (b < 0x80); the scanner's fast path.
  CharClass of_ascii(unsigned char b) const { return bmp_[b]; }

 private:
  CharClassifier();
  CharClass of_supplementary(uint32_t cp) const;

  std::vector<CharClass> bmp_;  // one entry per code point below U+10000
};

}  // namespace speedrun::data
