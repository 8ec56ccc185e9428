// The safetensors file format: checkpoints (train/checkpoint.*) and anything else that
// hands tensors to PyTorch users, who open it with the `safetensors` package or, as our
// tests do, with numpy alone.
//
// Layout (https://github.com/huggingface/safetensors, README "Format"):
//   8 bytes   N, the header's length, unsigned 64-bit little-endian
//   N bytes   a UTF-8 JSON object: "__metadata__": {string: string} (optional), and per
//             tensor "<name>": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [b, e]}
//   the rest  the byte buffer: each tensor's raw little-endian bytes in C order at
//             [b, e) from the buffer's start; the tensors cover the buffer exactly,
//             without holes or overlaps (the reference parser refuses files that do not)
// We pad the header with trailing spaces (allowed) to a multiple of 8 bytes, so every
// tensor we write starts 8-byte aligned when tensors are laid out in order.
//
// Integrity: the format has no checksum, so a flipped byte would load silently. We add
// the metadata entry "speedrun.crc32", a JSON object {name: CRC-32 of the tensor's bytes}
// (zlib's crc32, the IEEE polynomial), written always and checked on read when present.
// Other tools ignore it; files from other tools (without it) load unchecked.
//
// Errors: every failure throws UserError naming the file and, where there is one, the
// tensor: a truncated file, a header that is not the JSON above, an unknown dtype, a
// shape that does not match its byte range, ranges out of the file, overlapping or with
// holes, duplicate names, a CRC mismatch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace speedrun {

// Bytes per element of a safetensors dtype name ("F64", "F32", "F16", "BF16", "I64",
// "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"); 0 for an unknown name.
size_t safetensors_dtype_size(const std::string& dtype);

// One tensor to write: `bytes` must be numel(shape) * dtype size (checked). `data` is read
// during write_safetensors only (host memory).
struct SafetensorsTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
};

// Writes `tensors` (in the given order) and `metadata` to `path` atomically
// (core/files.h AtomicFile: fsync, rename, fsync of the directory: the file is complete
// or absent). Names must be unique and non-empty, and not "__metadata__"; the metadata
// key "speedrun.crc32" is ours (see above) and may not be passed. Throws UserError.
void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// A safetensors file opened for reading: mapped read-only, header parsed and every check
// above done (CRCs included) in open(), so a file that opens is whole.
class SafetensorsFile {
 public:
  struct View {
    std::string dtype;
    std::vector<int64_t> shape;
    const char* data = nullptr;  // into the mapping; valid while the SafetensorsFile lives
    size_t bytes = 0;
    int64_t numel() const;
  };

  static SafetensorsFile open(const std::filesystem::path& path);  // throws UserError
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The metadata value for `key`; throws UserError "<path>: no metadata entry <key>".
  const std::string& metadata_at(const std::string& key) const;
  // Tensor names in buffer order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws UserError "<path>: no tensor <name>" when absent.
  const View& tensor(const std::string& name) const;
  // Copies tensor `name` into `out` after checking its dtype and shape against the
  // expected ones; a mismatch throws UserError naming the file, the tensor, the expected
  // and the found dtype/shape.
  void read_into(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
                 void* out) const;

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> names_;
  std::map<std::string, View> tensors_;
};

}  // namespace speedrun
