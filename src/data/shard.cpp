#include "data/shard.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/files.h"

namespace speedrun::data {

namespace fs = std::filesystem;

namespace {

static_assert(std::endian::native == std::endian::little, "shards are little-endian; big-endian hosts unsupported");

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

File open_for_read(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw UserError("cannot read shard " + path.string() + ": it is a directory");
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) throw UserError("cannot read shard " + path.string() + ": " + errno_string(errno));
  return f;
}

ShardInfo check_header(std::FILE* f, const fs::path& path) {
  std::array<int32_t, 256> header{};
  const size_t got = std::fread(header.data(), sizeof(int32_t), header.size(), f);
  std::error_code ec;
  const auto file_size = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec) throw UserError("cannot read shard " + path.string() + ": " + ec.message());
  if (got != header.size())
    throw UserError("corrupt shard " + path.string() + ": file is " + std::to_string(file_size) +
                    " bytes, shorter than the 1024-byte header");
  if (header[0] != kShardMagic)
    throw UserError("corrupt shard " + path.string() + ": magic number is " + std::to_string(header[0]) +
                    ", expected " + std::to_string(kShardMagic) + " (not a modded-nanogpt/llm.c .bin shard?)");
  if (header[1] != kShardVersion)
    throw UserError("unsupported shard " + path.string() + ": version " + std::to_string(header[1]) +
                    ", expected " + std::to_string(kShardVersion));
  if (header[2] < 0)
    throw UserError("corrupt shard " + path.string() + ": negative token count " + std::to_string(header[2]));
  const int64_t n = header[2];
  const int64_t expected = kShardHeaderBytes + 2 * n;
  if (file_size != expected)
    throw UserError("corrupt shard " + path.string() + ": header says " + std::to_string(n) + " tokens, so " +
                    std::to_string(expected) + " bytes, but the file has " + std::to_string(file_size) +
                    (file_size < expected ? " (truncated)" : " (trailing bytes)"));
  return {path, n};
}

}  // namespace

ShardInfo read_shard_header(const fs::path& path) {
  File f = open_for_read(path);
  return check_header(f.get(), path);
}

std::vector<uint16_t> read_shard_tokens(const fs::path& path, int64_t offset, int64_t count, int64_t vocab_size) {
  File f = open_for_read(path);
  const ShardInfo info = check_header(f.get(), path);
  if (offset < 0 || count < 0 || offset + count > info.num_tokens)
    throw UserError("shard " + path.string() + " has " + std::to_string(info.num_tokens) +
                    " tokens; cannot read tokens [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
                    ")");
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  if (count > 0) {
    if (fseeko(f.get(), static_cast<off_t>(kShardHeaderBytes + 2 * offset), SEEK_SET) != 0)
      throw UserError("cannot seek in shard " + path.string() + ": " + errno_string(errno));
    const size_t got = std::fread(tokens.data(), sizeof(uint16_t), tokens.size(), f.get());
    if (got != tokens.size())
      throw UserError("cannot read shard " + path.string() + ": short read (" + std::to_string(got) + " of " +
                      std::to_string(count) + " tokens)");
  }
  if (vocab_size > 0) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] >= vocab_size)
        throw UserError("bad token in shard " + path.string() + ": id " + std::to_string(tokens[i]) +
                        " at token " + std::to_string(offset + static_cast<int64_t>(i)) +
                        " is not below the model's vocab_size " + std::to_string(vocab_size));
    }
  }
  return tokens;
}

std::vector<uint16_t> read_shard(const fs::path& path, int64_t vocab_size) {
  const ShardInfo info = read_shard_header(path);
  return read_shard_tokens(path, 0, info.num_tokens, vocab_size);
}

void write_shard(const fs::path& path, std::span<const uint16_t> tokens) {
  if (tokens.size() > static_cast<size_t>(INT32_MAX))
    throw UserError("cannot write shard " + path.string() + ": " + std::to_string(tokens.size()) +
                    " tokens exceed the header's int32 count");
  std::array<int32_t, 256> header{};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  write_file_atomic(path, [&](AtomicFile& f) {
    f.write(header.data(), header.size() * sizeof(int32_t));
    f.write(tokens.data(), tokens.size() * sizeof(uint16_t));
  });
}

std::vector<ShardInfo> list_shards(const std::string& pattern, const std::string& what) {
  // glob(3) reads "**" as "*" (one directory level), while upstream's Path.glob reads it
  // as any depth: the same pattern would silently match fewer files here.
  if (pattern.find("**") != std::string::npos)
    throw UserError(what + ": '" + pattern + "' uses **, which matches one directory level here (glob(3)) but any "
                    "depth in upstream's Path.glob; write each level out, e.g. data/*/shard_*.bin");
  std::vector<fs::path> paths;
  try {
    paths = glob_sorted(pattern);
  } catch (const UserError& e) {
    throw UserError(what + ": " + e.what());
  }
  if (paths.empty()) throw UserError(what + ": no files match '" + pattern + "'");
  std::vector<ShardInfo> shards;
  shards.reserve(paths.size());
  std::map<std::pair<dev_t, ino_t>, fs::path> seen;  // file identity -> first path
  for (const fs::path& p : paths) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0)
      throw UserError(what + ": '" + pattern + "' matches " + p.string() + ", which cannot be read: " +
                      errno_string(errno));
    if (!S_ISREG(st.st_mode))
      throw UserError(what + ": '" + pattern + "' matches " + p.string() + ", which is " +
                      (S_ISDIR(st.st_mode) ? "a directory" : "not a regular file") +
                      "; a shard pattern must match shard files only (e.g. end it in .bin)");
    const auto [it, fresh] = seen.emplace(std::make_pair(st.st_dev, st.st_ino), p);
    if (!fresh)
      throw UserError(what + ": '" + pattern + "' matches the same file twice, as " + it->second.string() + " and " +
                      p.string() + " (a link); its tokens would be read twice");
    shards.push_back(read_shard_header(p));
  }
  return shards;
}

}  // namespace speedrun::data
