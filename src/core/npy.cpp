#include "core/npy.h"

#include <cstring>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/files.h"

namespace speedrun {

namespace {
const char* descr(DType t) {
  switch (t) {
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::i32: return "<i4";
    case DType::u16: return "<u2";
    default: throw std::logic_error("write_npy: unsupported dtype");
  }
}
}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

void write_npy(const std::filesystem::path& path, const Tensor& t) {
  if (t.device != Device::cpu) throw std::logic_error("write_npy: CPU tensors only");
  std::string shape = "(";
  for (int i = 0; i < t.ndim; ++i) shape += std::to_string(t.dims[i]) + (t.ndim == 1 || i + 1 < t.ndim ? "," : "");
  shape += ")";
  std::string header = "{'descr': '" + std::string(descr(t.dtype)) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a
  // multiple of 64 and ending in '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  const uint16_t len = static_cast<uint16_t>(header.size());
  write_file_atomic(path, [&](AtomicFile& f) {
    f.write("\x93NUMPY\x01\x00", 8);
    f.write(&len, 2);
    f.write(header);
    f.write(t.ptr, t.bytes());
  });
}

NpyArray read_npy(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UserError("cannot read " + path.string());
  char magic[8];
  uint16_t len = 0;
  f.read(magic, 8);
  f.read(reinterpret_cast<char*>(&len), 2);
  if (!f || std::memcmp(magic, "\x93NUMPY\x01", 7) != 0) throw UserError(path.string() + ": not a .npy v1 file");
  std::string header(len, '\0');
  f.read(header.data(), len);
  NpyArray a;
  if (header.find("'<f4'") != std::string::npos) a.dtype = DType::f32;
  else if (header.find("'<f8'") != std::string::npos) a.dtype = DType::f64;
  else if (header.find("'<i4'") != std::string::npos) a.dtype = DType::i32;
  else throw UserError(path.string() + ": unsupported dtype in header " + header);
  if (header.find("'fortran_order': False") == std::string::npos)
    throw UserError(path.string() + ": Fortran-order arrays are not supported");
  const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
  std::string dims = header.substr(open + 1, close - open - 1);
  for (size_t pos = 0; pos < dims.size();) {
    const size_t comma = dims.find(',', pos);
    const std::string item = dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (item.find_first_not_of(' ') != std::string::npos) a.shape.push_back(std::stoll(item));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  a.data.resize(static_cast<size_t>(a.numel()) * dtype_size(a.dtype));
  f.read(a.data.data(), static_cast<std::streamsize>(a.data.size()));
  if (!f) throw UserError(path.string() + ": truncated data");
  return a;
}

}  // namespace speedrun
