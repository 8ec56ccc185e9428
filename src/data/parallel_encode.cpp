#include "data/parallel_encode.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include "data/pretokenize.h"

namespace speedrun::data {

std::vector<std::pair<size_t, size_t>> split_into_chunks(std::string_view text, size_t chunk_bytes) {
  std::vector<std::pair<size_t, size_t>> chunks;
  const size_t min_bytes = std::max<size_t>(chunk_bytes, 1);  // every chunk but the last is non-empty
  size_t begin = 0;
  while (true) {
    const size_t end = text.size() - begin <= min_bytes ? text.size()
                                                        : find_safe_split_point(text, begin + min_bytes);
    chunks.emplace_back(begin, end);
    if (end == text.size()) break;
    begin = end;
  }
  return chunks;
}

std::vector<std::vector<uint16_t>> encode_documents(const Gpt2Tokenizer& tokenizer,
                                                    std::span<const std::string_view> documents, int threads,
                                                    size_t chunk_bytes) {
  struct Chunk {
    size_t document;
    std::string_view text;
    std::vector<uint16_t> ids;
  };
  std::vector<Chunk> chunks;
  for (size_t d = 0; d < documents.size(); ++d) {
    for (const auto& [begin, end] : split_into_chunks(documents[d], chunk_bytes))
      chunks.push_back({d, documents[d].substr(begin, end - begin), {}});
  }

  // Workers take chunks in order from a shared counter; each writes only its own chunk.
  std::atomic<size_t> next_chunk{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&] {
    try {
      for (size_t i = next_chunk++; i < chunks.size(); i = next_chunk++)
        tokenizer.encode_append(chunks[i].text, chunks[i].ids);
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      next_chunk = chunks.size();
    }
  };
  const size_t num_workers = std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), chunks.size());
  if (num_workers <= 1) {
    work();
  } else {
    std::vector<std::thread> workers;
    for (size_t t = 0; t < num_workers; ++t) workers.emplace_back(work);
    for (std::thread& w : workers) w.join();
  }
  if (failure) std::rethrow_exception(failure);

  std::vector<std::vector<uint16_t>> ids(documents.size());
  for (Chunk& chunk : chunks) {
    std::vector<uint16_t>& doc = ids[chunk.document];
    if (doc.empty())
      doc = std::move(chunk.ids);
    else
      doc.insert(doc.end(), chunk.ids.begin(), chunk.ids.end());
  }
  return ids;
}

}  // namespace speedrun::data
