// Encodes many documents on several threads. Documents are cut into chunks of about
// `chunk_bytes` at safe split points (pretokenize.h), so a single large document also
// keeps every thread busy. The ids are the same as encoding each document whole, for
// any thread count and chunk size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"

namespace speedrun::data {

inline constexpr size_t kDefaultChunkBytes = size_t{1} << 20;

// The [begin, end) byte ranges that `text` is encoded in: consecutive, covering the
// text, each cut at a safe split point and (but for the last) at least `chunk_bytes`
// long. An empty text has one empty chunk.
std::vector<std::pair<size_t, size_t>> split_into_chunks(std::string_view text, size_t chunk_bytes);

// ids of each document, in order. threads >= 1.
std::vector<std::vector<uint16_t>> encode_documents(const Gpt2Tokenizer& tokenizer,
                                                    std::span<const std::string_view> documents, int threads,
                                                    size_t chunk_bytes = kDefaultChunkBytes);

}  // namespace speedrun::data
