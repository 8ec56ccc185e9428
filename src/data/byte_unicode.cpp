#include "data/byte_unicode.h"

#include <array>

#include "data/utf8.h"

namespace speedrun::data {

namespace {

bool is_printable_latin1(unsigned b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

// The 68 substitutes are U+0100..U+0143, so every alphabet character is below this.
constexpr uint32_t kAlphabetEnd = 0x100 + 68;

struct Alphabet {
  std::array<uint32_t, 256> char_of_byte{};
  std::array<int, kAlphabetEnd> byte_of_char{};
  Alphabet() {
    byte_of_char.fill(-1);
    uint32_t next_substitute = 0x100;
    for (unsigned b = 0; b < 256; ++b) {
      char_of_byte[b] = is_printable_latin1(b) ? b : next_substitute++;
      byte_of_char[char_of_byte[b]] = static_cast<int>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}

void append_utf8(uint32_t cp, std::string& out) {
  // The alphabet lies below U+0800, so one or two bytes suffice.
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace

uint32_t byte_to_unicode(uint8_t b) { return alphabet().char_of_byte[b]; }

int unicode_to_byte(uint32_t code_point) {
  return code_point < kAlphabetEnd ? alphabet().byte_of_char[code_point] : -1;
}

bool byte_level_to_bytes(std::string_view byte_level, std::string* bytes) {
  bytes->clear();
  const auto* p = reinterpret_cast<const unsigned char*>(byte_level.data());
  const auto* end = p + byte_level.size();
  const Alphabet& a = alphabet();
  while (p < end) {
    uint32_t cp = 0;
    const int length = decode_utf8(p, end, &cp);
    if (length == 0) return false;
    const int b = cp < kAlphabetEnd ? a.byte_of_char[cp] : -1;
    if (b < 0) return false;
    bytes->push_back(static_cast<char>(b));
    p += length;
  }
  return true;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) append_utf8(byte_to_unicode(static_cast<uint8_t>(c)), out);
  return out;
}

}  // namespace speedrun::data
