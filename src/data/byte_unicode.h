// GPT-2's byte-level alphabet: every byte is written as one Unicode character so that
// token strings in encoder.json / vocab.bpe are printable. Bytes that are printable
// Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes
// (controls, space, DEL, NBSP, soft hyphen) map, in byte order, to U+0100, U+0101, ...
// (so ' ' is 'Ġ' = U+0120 and '\n' is 'Ċ' = U+010A).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace speedrun::data {

// The character that stands for byte b.
uint32_t byte_to_unicode(uint8_t b);

// The byte a character stands for, or -1 when it is not in the byte-level alphabet.
int unicode_to_byte(uint32_t code_point);

// Converts a byte-level string (UTF-8 text made only of alphabet characters) to the
// raw bytes it stands for. Returns false (leaving *bytes unspecified) when the text
// is not valid UTF-8 or holds a character outside the alphabet.
bool byte_level_to_bytes(std::string_view byte_level, std::string* bytes);

// The inverse: raw bytes to their byte-level spelling (UTF-8).
std::string bytes_to_byte_level(std::string_view bytes);

}  // namespace speedrun::data
