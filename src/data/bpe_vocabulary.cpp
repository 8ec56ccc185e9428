#include "data/bpe_vocabulary.h"

#include <cstdio>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "core/json_text.h"
#include "data/byte_unicode.h"
#include "data/shard.h"

namespace speedrun::data {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxTokens = 65536;  // ids are stored as uint16

// A string quoted for an error message (JSON escapes; invalid UTF-8 replaced).
std::string quote(std::string_view s) {
  constexpr size_t kMaxShown = 80;
  std::string shown(s.substr(0, kMaxShown));
  std::string out = nlohmann::json(shown).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > kMaxShown) out += "...";
  return out;
}

struct Encoder {
  std::vector<std::string> token_bytes;
  std::unordered_map<std::string, uint16_t> id_of;  // byte-level spelling -> id
  std::optional<uint16_t> end_of_text;
};

uint16_t checked_id(const fs::path& path, const std::string& token, const nlohmann::json& value, size_t num_tokens) {
  if (!value.is_number_integer())
    throw UserError(path.string() + ": token " + quote(token) + " has id " + value.dump() +
                    ", expected an integer (encoder.json maps token strings to integer ids)");
  const bool negative = value.is_number_integer() && !value.is_number_unsigned() && value.get<int64_t>() < 0;
  if (negative || value.get<uint64_t>() >= num_tokens)
    throw UserError(path.string() + ": token " + quote(token) + " has id " + value.dump() + ", but with " +
                    std::to_string(num_tokens) + " tokens the ids must be exactly 0.." +
                    std::to_string(num_tokens - 1));
  return static_cast<uint16_t>(value.get<uint64_t>());
}

Encoder read_encoder(const fs::path& path) {
  const std::string text = read_text_file(path);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw UserError(path.string() + ": not valid JSON: " + e.what());
  }
  // The parser keeps the last of two equal keys: a token spelled twice would silently
  // lose one of its ids.
  if (const std::vector<DuplicateKey> dups = find_duplicate_keys(text); !dups.empty())
    throw UserError(path.string() + ":" + std::to_string(dups.front().line) + ": token " + quote(dups.front().path) +
                    " appears twice (first at line " + std::to_string(dups.front().first_line) + ")");
  if (!json.is_object())
    throw UserError(path.string() + ": expected a JSON object mapping token strings to ids, found " +
                    std::string(json.type_name()));
  const size_t n = json.size();
  if (n > kMaxTokens)
    throw UserError(path.string() + ": has " + std::to_string(n) + " tokens; ids must fit in 16 bits (at most " +
                    std::to_string(kMaxTokens) + " tokens)");

  Encoder enc;
  enc.token_bytes.resize(n);
  std::vector<const std::string*> spelling_of(n, nullptr);
  enc.id_of.reserve(n);
  for (const auto& [token, value] : json.items()) {
    const uint16_t id = checked_id(path, token, value, n);
    if (spelling_of[id])
      throw UserError(path.string() + ": tokens " + quote(*spelling_of[id]) + " and " + quote(token) +
                      " both have id " + std::to_string(id));
    if (token.empty())
      throw UserError(path.string() + ": the empty string is not a token (id " + std::to_string(id) + ")");
    if (!byte_level_to_bytes(token, &enc.token_bytes[id]))
      throw UserError(path.string() + ": token " + quote(token) + " (id " + std::to_string(id) +
                      ") is not a byte-level string: GPT-2 writes each byte as one character of its byte-to-unicode "
                      "alphabet (printable Latin-1, or U+0100..U+0143 for the other bytes)");
    const auto [it, inserted] = enc.id_of.emplace(token, id);
    spelling_of[id] = &it->first;
    if (token == kEndOfTextToken) {
      if (id != kEndOfText)
        throw UserError(path.string() + ": " + kEndOfTextToken + " has id " + std::to_string(id) + ", expected " +
                        std::to_string(kEndOfText) + " (the document separator in token shards)");
      enc.end_of_text = id;
    }
  }
  return enc;
}

// Splits a file's text into lines ("\n"; a trailing "\r" is dropped). A final newline
// does not start another line.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

}  // namespace

BpeVocabulary read_bpe_vocabulary(const fs::path& encoder_json, const fs::path& vocab_bpe) {
  Encoder enc = read_encoder(encoder_json);
  const size_t n = enc.token_bytes.size();
  const std::string where_encoder = " in " + encoder_json.string();

  for (unsigned b = 0; b < 256; ++b) {
    const std::string spelling = bytes_to_byte_level(std::string(1, static_cast<char>(b)));
    if (!enc.id_of.count(spelling)) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      throw UserError(encoder_json.string() + ": no token for byte " + hex + " (spelled " + quote(spelling) +
                      "); a byte-level BPE needs one token for each of the 256 bytes");
    }
  }

  const std::string text = read_text_file(vocab_bpe);
  const std::vector<std::string_view> lines = split_lines(text);
  const std::string file = vocab_bpe.string();
  if (lines.empty() || !lines[0].starts_with("#version"))
    throw UserError(file + ": the first line is " + (lines.empty() ? std::string("missing") : quote(lines[0])) +
                    ", expected the header \"#version: 0.2\" (is this a GPT-2 vocab.bpe?)");

  BpeVocabulary vocab;
  vocab.merges.reserve(lines.size() - 1);
  std::vector<size_t> created_on_line(n, 0);  // 0 = not created by a merge
  std::unordered_map<uint32_t, size_t> line_of_pair;
  line_of_pair.reserve(lines.size());
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    const size_t line_no = i + 1;
    const std::string at = file + ": line " + std::to_string(line_no) + ": ";
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos)
      throw UserError(at + "expected a merge: two tokens separated by one space, got " + quote(line));
    const std::string left(line.substr(0, space)), right(line.substr(space + 1));
    const std::string merged = left + right;
    const std::string what = "merge " + quote(line) + ": ";
    const auto left_it = enc.id_of.find(left), right_it = enc.id_of.find(right), merged_it = enc.id_of.find(merged);
    if (left_it == enc.id_of.end()) throw UserError(at + what + quote(left) + " is not a token" + where_encoder);
    if (right_it == enc.id_of.end()) throw UserError(at + what + quote(right) + " is not a token" + where_encoder);
    if (merged_it == enc.id_of.end())
      throw UserError(at + what + "the merged token " + quote(merged) + " is not a token" + where_encoder);
    const uint16_t l = left_it->second, r = right_it->second, m = merged_it->second;
    for (const uint16_t part : {l, r}) {
      if (enc.token_bytes[part].size() > 1 && created_on_line[part] == 0)
        throw UserError(at + what + "it uses " + quote(bytes_to_byte_level(enc.token_bytes[part])) +
                        ", which no earlier merge creates (merges must be listed in rank order)");
    }
    if (enc.end_of_text && m == *enc.end_of_text)
      throw UserError(at + what + "it creates " + kEndOfTextToken + ", which is reserved as a special token");
    const uint32_t pair = (uint32_t{l} << 16) | r;
    if (const auto [it, inserted] = line_of_pair.emplace(pair, line_no); !inserted)
      throw UserError(at + what + "repeats the merge on line " + std::to_string(it->second));
    if (created_on_line[m] != 0)
      throw UserError(at + what + "creates " + quote(merged) + ", which line " + std::to_string(created_on_line[m]) +
                      " already creates");
    created_on_line[m] = line_no;
    vocab.merges.push_back({l, r, m});
  }

  const size_t expected = 256 + vocab.merges.size() + (enc.end_of_text ? 1 : 0);
  if (n != expected) {
    std::string example;
    for (size_t id = 0; id < n && example.empty(); ++id) {
      if (enc.token_bytes[id].size() > 1 && created_on_line[id] == 0 && (!enc.end_of_text || id != *enc.end_of_text))
        example = "; e.g. token " + quote(bytes_to_byte_level(enc.token_bytes[id])) + " (id " + std::to_string(id) +
                  ") is neither a byte nor created by a merge";
    }
    throw UserError(file + " has " + std::to_string(vocab.merges.size()) + " merges and " + encoder_json.string() +
                    " has " + std::to_string(n) + " tokens, but a byte-level BPE has 256 byte tokens + one per merge" +
                    (enc.end_of_text ? std::string(" + ") + kEndOfTextToken : std::string()) + " = " +
                    std::to_string(expected) + example + " (are the two files from the same tokenizer?)");
  }
  vocab.token_bytes = std::move(enc.token_bytes);
  vocab.end_of_text = enc.end_of_text;
  return vocab;
}

}  // namespace speedrun::data
