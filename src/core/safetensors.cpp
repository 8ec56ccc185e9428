#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "core/json_text.h"

namespace speedrun {

namespace {

constexpr const char* kCrcKey = "speedrun.crc32";
// The reference implementation refuses headers over 100 MB; so do we (a corrupted
// length must not make us allocate or read gigabytes).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string dims_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// numel of `shape`, or -1 when a dimension is negative or the product overflows.
int64_t checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

// CRC-32 of `bytes` bytes; zlib takes uInt lengths, so feed it in chunks.
uint32_t crc32_of(const void* data, size_t bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (bytes > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(bytes, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    bytes -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                                      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U64", 8},  {"U32", 4},
                                                      {"U16", 2}, {"U8", 1},  {"BOOL", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

int64_t SafetensorsFile::View::numel() const { return checked_numel(shape); }

void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string where = "cannot write " + path.string() + ": ";
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata) {
    if (k == kCrcKey) throw std::logic_error(std::string("write_safetensors: metadata key ") + kCrcKey + " is reserved");
    meta[k] = v;
  }
  nlohmann::ordered_json crcs = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const SafetensorsTensor& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      throw std::logic_error("write_safetensors: bad tensor name '" + t.name + "'");
    if (header.contains(t.name)) throw std::logic_error("write_safetensors: duplicate tensor " + t.name);
    const size_t elem = safetensors_dtype_size(t.dtype);
    const int64_t numel = checked_numel(t.shape);
    if (elem == 0 || numel < 0 || static_cast<uint64_t>(numel) * elem != t.bytes)
      throw std::logic_error("write_safetensors: tensor " + t.name + " is " + std::to_string(t.bytes) + " bytes, not " +
                             t.dtype + " " + dims_text(t.shape));
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes}}};
    crcs[t.name] = crc32_of(t.data, t.bytes);
    offset += t.bytes;
  }
  meta[kCrcKey] = crcs.dump();
  // __metadata__ first, as the reference writer does: a reader that looks at the head of
  // the file (e.g. `head -c`) sees it.
  nlohmann::ordered_json ordered = nlohmann::ordered_json::object();
  ordered["__metadata__"] = meta;
  for (auto& [k, v] : header.items()) ordered[k] = v;
  std::string text = ordered.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  write_file_atomic(path, [&](AtomicFile& f) {
    unsigned char len[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    f.write(len, 8);
    f.write(text);
    for (const SafetensorsTensor& t : tensors)
      if (t.bytes > 0) f.write(t.data, t.bytes);
  });
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile file;
  file.path_ = path;
  const std::string name = path.string();
  auto bad = [&](const std::string& why) -> UserError {
    return UserError(name + ": not a complete safetensors file: " + why);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError("cannot read " + name + ": " + std::strerror(errno));
  struct stat st{};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw UserError("cannot read " + name + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw UserError("cannot read " + name + ": not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw bad("it is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) throw UserError("cannot read " + name + ": mmap: " + std::strerror(map_err));
  file.map_ = map;
  file.map_bytes_ = size;
  const auto* bytes = static_cast<const unsigned char*>(map);

  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  if (header_len > kMaxHeaderBytes || header_len > size - 8)
    throw bad("its header length field says " + std::to_string(header_len) + " bytes, but the file has " +
              std::to_string(size - 8) + " after it (truncated or not safetensors)");
  const std::string_view text(reinterpret_cast<const char*>(bytes + 8), header_len);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("its header is not JSON (") + e.what() + ")");
  }
  // nlohmann keeps the last of two equal keys silently; a repeated tensor name is a
  // malformed file (the reference parser refuses it too).
  if (const auto dups = find_duplicate_keys(std::string(text)); !dups.empty())
    throw bad("its header names " + dups.front().path + " twice");
  if (!header.is_object()) throw bad("its header is not a JSON object");
  const uint64_t buffer_bytes = size - 8 - header_len;
  const char* buffer = reinterpret_cast<const char*>(bytes + 8 + header_len);

  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // (begin, end) per tensor, for the coverage check
  for (auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) throw bad("__metadata__ is not an object");
      for (auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) throw bad("__metadata__ entry " + mk + " is not a string");
        file.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    auto tensor_bad = [&](const std::string& why) { return bad("tensor " + key + ": " + why); };
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") || !value.contains("data_offsets"))
      throw tensor_bad("expected {\"dtype\", \"shape\", \"data_offsets\"}");
    View v;
    if (!value["dtype"].is_string()) throw tensor_bad("dtype is not a string");
    v.dtype = value["dtype"].get<std::string>();
    const size_t elem = safetensors_dtype_size(v.dtype);
    if (elem == 0) throw tensor_bad("unknown dtype " + v.dtype);
    if (!value["shape"].is_array()) throw tensor_bad("shape is not an array");
    for (const auto& d : value["shape"]) {
      if (!d.is_number_unsigned()) throw tensor_bad("shape has a dimension that is not a non-negative integer");
      v.shape.push_back(d.get<int64_t>());
    }
    const auto& off = value["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw tensor_bad("data_offsets is not [begin, end]");
    const auto begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > buffer_bytes)
      throw tensor_bad("bytes [" + std::to_string(begin) + ", " + std::to_string(end) + ") lie outside the " +
                       std::to_string(buffer_bytes) + "-byte data buffer (truncated?)");
    const int64_t numel = checked_numel(v.shape);
    if (numel < 0 || static_cast<uint64_t>(numel) * elem != end - begin)
      throw tensor_bad(v.dtype + " " + dims_text(v.shape) + " does not fill its " + std::to_string(end - begin) +
                       " bytes");
    v.data = buffer + begin;
    v.bytes = end - begin;
    ranges.emplace_back(begin, end);
    file.tensors_.emplace(key, std::move(v));
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t covered = 0;
  for (const auto& [b, e] : ranges) {
    if (b != covered)
      throw bad(b < covered ? "two tensors share bytes at offset " + std::to_string(b)
                            : "bytes [" + std::to_string(covered) + ", " + std::to_string(b) +
                                  ") of the data buffer belong to no tensor");
    covered = e;
  }
  if (covered != buffer_bytes)
    throw bad("the data buffer is " + std::to_string(buffer_bytes) + " bytes, the tensors cover " +
              std::to_string(covered) + " (trailing bytes)");
  // Names in buffer order.
  for (const auto& [n, v] : file.tensors_) file.names_.push_back(n);
  std::sort(file.names_.begin(), file.names_.end(),
            [&](const std::string& a, const std::string& b) { return file.tensors_[a].data < file.tensors_[b].data; });

  if (auto it = file.metadata_.find(kCrcKey); it != file.metadata_.end()) {
    nlohmann::json crcs;
    try {
      crcs = nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception&) {
      throw bad(std::string("metadata ") + kCrcKey + " is not JSON");
    }
    if (!crcs.is_object()) throw bad(std::string("metadata ") + kCrcKey + " is not an object");
    for (const auto& [n, v] : file.tensors_) {
      if (!crcs.contains(n) || !crcs[n].is_number_unsigned()) throw bad("tensor " + n + " has no CRC-32 in " + kCrcKey);
      if (crc32_of(v.data, v.bytes) != crcs[n].get<uint32_t>())
        throw UserError(name + ": tensor " + n + " is corrupted (its CRC-32 does not match the one written with it)");
    }
    if (crcs.size() != file.tensors_.size()) throw bad(std::string(kCrcKey) + " names tensors the file does not hold");
  }
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (map_) munmap(map_, map_bytes_);
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    metadata_ = std::move(o.metadata_);
    names_ = std::move(o.names_);
    tensors_ = std::move(o.tensors_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, map_bytes_);
}

const std::string& SafetensorsFile::metadata_at(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) throw UserError(path_.string() + ": no metadata entry " + key);
  return it->second;
}

const SafetensorsFile::View& SafetensorsFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw UserError(path_.string() + ": no tensor " + name);
  return it->second;
}

void SafetensorsFile::read_into(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
                                void* out) const {
  const View& v = tensor(name);
  if (v.dtype != dtype || v.shape != shape)
    throw UserError(path_.string() + ": tensor " + name + " is " + v.dtype + " " + dims_text(v.shape) + ", expected " +
                    dtype + " " + dims_text(shape));
  if (v.bytes > 0) std::memcpy(out, v.data, v.bytes);
}

}  // namespace speedrun
