#include "data/char_class.h"

#include <algorithm>
#include <span>

#include "data/unicode_tables.h"

namespace speedrun::data {

namespace {

bool in_ranges(std::span<const unicode::CodePointRange> ranges, uint32_t cp) {
  // First range whose end is >= cp; cp is inside when that range starts at or before it.
  auto it = std::lower_bound(ranges.begin(), ranges.end(), cp,
                             [](const unicode::CodePointRange& r, uint32_t c) { return r.last < c; });
  return it != ranges.end() && it->first <= cp;
}

void fill(std::vector<CharClass>& table, std::span<const unicode::CodePointRange> ranges, CharClass cls) {
  for (const auto& r : ranges)
    for (uint32_t cp = r.first; cp <= r.last && cp < table.size(); ++cp) table[cp] = cls;
}

}  // namespace

const CharClassifier& CharClassifier::instance() {
  static const CharClassifier classifier;
  return classifier;
}

CharClassifier::CharClassifier() : bmp_(0x10000, CharClass::other) {
  // A flat table for the Basic Multilingual Plane (64 KiB) makes nearly all lookups
  // one load; the rare supplementary code points use binary search on the ranges.
  fill(bmp_, unicode::kLetters, CharClass::letter);
  fill(bmp_, unicode::kNumbers, CharClass::number);
  fill(bmp_, unicode::kWhitespace, CharClass::whitespace);
}

CharClass CharClassifier::of_supplementary(uint32_t cp) const {
  if (in_ranges(unicode::kLetters, cp)) return CharClass::letter;
  if (in_ranges(unicode::kNumbers, cp)) return CharClass::number;
  if (in_ranges(unicode::kWhitespace, cp)) return CharClass::whitespace;
  return CharClass::other;
}

}  // namespace speedrun::data
