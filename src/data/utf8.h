// Strict UTF-8 decoding of one code point (Unicode Table 3-7, "well-formed byte
// sequences"): overlong forms, surrogates, values above U+10FFFF and truncated
// sequences are rejected, so the tokenizer can treat each byte of them on its own.
#pragma once

#include <cstdint>

namespace speedrun::data {

// Decodes the code point starting at p (p < end). Returns its length in bytes (1-4)
// and stores it in *cp, or returns 0 when the bytes at p are not well-formed UTF-8.
inline int decode_utf8(const unsigned char* p, const unsigned char* end, uint32_t* cp) {
  const unsigned b0 = p[0];
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  const auto avail = end - p;
  auto is_cont = [](unsigned b) { return (b & 0xC0u) == 0x80u; };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (avail < 2 || !is_cont(p[1])) return 0;
    *cp = ((b0 & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (avail < 3) return 0;
    const unsigned b1 = p[1];
    // E0 needs A0..BF (no overlongs); ED needs 80..9F (no surrogates).
    const unsigned lo = b0 == 0xE0 ? 0xA0u : 0x80u;
    const unsigned hi = b0 == 0xED ? 0x9Fu : 0xBFu;
    if (b1 < lo || b1 > hi || !is_cont(p[2])) return 0;
    *cp = ((b0 & 0x0Fu) << 12) | ((b1 & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (avail < 4) return 0;
    const unsigned b1 = p[1];
    // F0 needs 90..BF (no overlongs); F4 needs 80..8F (nothing above U+10FFFF).
    const unsigned lo = b0 == 0xF0 ? 0x90u : 0x80u;
    const unsigned hi = b0 == 0xF4 ? 0x8Fu : 0xBFu;
    if (b1 < lo || b1 > hi || !is_cont(p[2]) || !is_cont(p[3])) return 0;
    *cp = ((b0 & 0x07u) << 18) | ((b1 & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
    return 4;
  }
  return 0;  // a continuation byte, C0/C1 (always overlong) or F5..FF
}

}  // namespace speedrun::data
