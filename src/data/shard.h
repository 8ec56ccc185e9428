// Token shards (.bin), the format of modded-nanogpt and llm.c:
//   header: 256 little-endian int32: [0] = 20240520 (magic), [1] = 1 (version),
//           [2] = number of tokens N, the rest 0;
//   body:   N little-endian uint16 GPT-2 token ids; file size exactly 1024 + 2*N.
// Offsets and counts are 64-bit throughout.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace speedrun::data {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr int64_t kShardHeaderBytes = 256 * 4;
inline constexpr uint16_t kEndOfText = 50256;

struct ShardInfo {
  std::filesystem::path path;
  int64_t num_tokens = 0;
};

// Reads and checks a shard's header against the file size. Throws UserError naming
// the file and the problem (wrong magic, version, truncated or oversized body).
ShardInfo read_shard_header(const std::filesystem::path& path);

// Reads `count` tokens starting at token `offset` (header checked first). When
// vocab_size > 0, every id must be < vocab_size; the first offender is reported with
// its position. Throws UserError on any problem.
std::vector<uint16_t> read_shard_tokens(const std::filesystem::path& path, int64_t offset, int64_t count,
                                        int64_t vocab_size);

// Reads a whole shard (header checked, ids checked when vocab_size > 0).
std::vector<uint16_t> read_shard(const std::filesystem::path& path, int64_t vocab_size);

// Writes a shard atomically (core/files.h AtomicFile: complete or absent under its
// name). Throws UserError naming the file and the reason.
void write_shard(const std::filesystem::path& path, std::span<const uint16_t> tokens);

// Expands a shard glob into its shards, sorted by path, every header checked. Every
// match is read, so a match that cannot be read as a shard is an error rather than a
// file left out: no match, a match that is not a regular file (a directory), and two
// matches that are the same file (links) are UserErrors naming the pattern (`what` says
// which, e.g. "data.train_glob") and the paths; so is "**", which glob(3) does not
// read as upstream's recursive Path.glob does.
std::vector<ShardInfo> list_shards(const std::string& pattern, const std::string& what);

}  // namespace speedrun::data
