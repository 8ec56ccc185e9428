#include "data/tokenizer.h"

#include <atomic>

#include "core/error.h"
#include "data/bpe_vocabulary.h"
#include "data/piece_cache.h"
#include "data/pretokenize.h"
#include "data/tokenizer_files.h"

namespace speedrun::data {

namespace {

std::atomic<uint64_t> next_serial{1};

// This thread's piece cache, emptied when it last served another tokenizer.
PieceCache& piece_cache_for(uint64_t serial) {
  thread_local PieceCache cache;
  if (cache.owner() != serial) {
    cache.clear();
    cache.set_owner(serial);
  }
  return cache;
}

}  // namespace

Gpt2Tokenizer Gpt2Tokenizer::load(const std::filesystem::path& encoder_json, const std::filesystem::path& vocab_bpe) {
  BpeVocabulary vocab = read_bpe_vocabulary(encoder_json, vocab_bpe);
  Gpt2Tokenizer tok;
  tok.token_bytes_ = std::move(vocab.token_bytes);
  tok.end_of_text_ = vocab.end_of_text;
  for (size_t id = 0; id < tok.token_bytes_.size(); ++id) {
    const std::string& bytes = tok.token_bytes_[id];
    if (bytes.size() == 1 && !(tok.end_of_text_ && id == *tok.end_of_text_))
      tok.byte_token_[static_cast<uint8_t>(bytes[0])] = static_cast<uint16_t>(id);
  }
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const BpeVocabulary::Merge& m = vocab.merges[rank];
    tok.merges_.add(m.left, m.right, MergeRule{static_cast<uint32_t>(rank), m.merged});
  }
  tok.serial_ = next_serial.fetch_add(1);
  return tok;
}

Gpt2Tokenizer Gpt2Tokenizer::load_default() {
  const TokenizerFiles files = find_default_tokenizer_files();
  return load(files.encoder_json, files.vocab_bpe);
}

std::vector<uint16_t> Gpt2Tokenizer::encode(std::string_view text) const {
  std::vector<uint16_t> out;
  out.reserve(text.size() / 3 + 16);  // English averages ~4.5 bytes per token
  encode_append(text, out);
  return out;
}

void Gpt2Tokenizer::encode_append(std::string_view text, std::vector<uint16_t>& out) const {
  PieceCache& cache = piece_cache_for(serial_);
  Pretokenizer scanner(text);
  std::vector<uint16_t> ids;
  for (std::string_view piece = scanner.next(); !piece.empty(); piece = scanner.next()) {
    if (piece.size() == 1) {  // one byte: no merge possible
      out.push_back(byte_token_[static_cast<uint8_t>(piece[0])]);
      continue;
    }
    std::span<const uint16_t> cached;
    if (cache.find(piece, &cached)) {
      out.insert(out.end(), cached.begin(), cached.end());
      continue;
    }
    ids.clear();
    for (const char c : piece) ids.push_back(byte_token_[static_cast<uint8_t>(c)]);
    bpe_merge(merges_, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    if (piece.size() <= PieceCache::kMaxPieceBytes) cache.insert(piece, ids);
  }
}

std::string Gpt2Tokenizer::decode(std::span<const uint16_t> ids) const {
  std::string text;
  text.reserve(ids.size() * 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= token_bytes_.size())
      throw UserError("cannot decode token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                      ": the vocabulary has " + std::to_string(token_bytes_.size()) + " tokens");
    text += token_bytes_[ids[i]];
  }
  return text;
}

}  // namespace speedrun::data
