// Minimal NumPy .npy (format 1.0) writer and reader for little-endian f32, f64, i32
// arrays: the exchange format with the PyTorch reference tests and for debug dumps.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/tensor.h"

namespace speedrun {

// Writes `t` (a CPU tensor) with its shape, atomically (core/files.h AtomicFile: the
// file is complete or absent). Throws UserError naming the file and the reason.
void write_npy(const std::filesystem::path& path, const Tensor& t);

struct NpyArray {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<char> data;
  template <class T>
  const T* as() const {
    return reinterpret_cast<const T*>(data.data());
  }
  int64_t numel() const;
};

// Reads an array written by write_npy or numpy.save (C order, '<f4', '<f8', '<i4').
NpyArray read_npy(const std::filesystem::path& path);

}  // namespace speedrun
