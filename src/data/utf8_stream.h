// Text from token bytes, as it is drawn: GPT-2's byte-level tokens may split a character
// over several tokens, and a sampled sequence may hold bytes that are not UTF-8 at all.
// Utf8Stream passes well-formed UTF-8 through, holds back a sequence that the next bytes
// may still complete, and replaces each maximal ill-formed subpart (Unicode §3.9, "U+FFFD
// substitution of maximal subparts" — what Python's errors="replace", and so tiktoken's
// decode, do) with U+FFFD, so that what `speedrun sample` prints is always valid UTF-8,
// whatever the chunking.
#pragma once

#include <string>
#include <string_view>

#include "data/utf8.h"

namespace speedrun::data {

class Utf8Stream {
 public:
  // Appends `bytes`; returns the text that is final now.
  std::string push(std::string_view bytes) {
    pending_.append(bytes);
    return drain(/*at_end=*/false);
  }
  // The end of the input: an incomplete sequence left over becomes U+FFFD.
  std::string finish() { return drain(/*at_end=*/true); }

 private:
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

  // How many bytes from p form the longest prefix of a well-formed sequence (at least 1:
  // a byte that starts none is a subpart of its own), and the sequence's full length.
  static void prefix(const unsigned char* p, const unsigned char* end, size_t* valid, size_t* full) {
    const unsigned b0 = p[0];
    unsigned lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      *full = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      *full = 3;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      *full = 4;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    } else {
      *valid = *full = 1;  // ASCII is handled by the caller; anything else here is ill-formed
      return;
    }
    size_t k = 1;
    while (k < *full && p + k < end) {
      const unsigned b = p[k];
      const unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (b < l || b > h) break;
      ++k;
    }
    *valid = k;
  }

  std::string drain(bool at_end) {
    std::string out;
    const auto* p = reinterpret_cast<const unsigned char*>(pending_.data());
    const auto* end = p + pending_.size();
    while (p < end) {
      uint32_t cp = 0;
      if (const int n = decode_utf8(p, end, &cp); n > 0) {
        out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
        p += n;
        continue;
      }
      size_t valid = 0, full = 0;
      prefix(p, end, &valid, &full);
      if (p + valid == end && valid < full && !at_end) break;  // may still complete
      out.append(kReplacement);
      p += valid;
    }
    pending_.erase(0, static_cast<size_t>(p - reinterpret_cast<const unsigned char*>(pending_.data())));
    return out;
  }

  std::string pending_;
};

}  // namespace speedrun::data
