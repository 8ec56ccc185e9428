// Tensor: a non-owning, contiguous, row-major view of memory on one device.
//
// Model code, optimizers and the ops layer pass Tensors around; the memory itself lives
// in flat buffers (parameters, gradients, optimizer state, activations) that are carved
// into named views. An op dispatches on the device and dtype of its tensors.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace speedrun {

enum class Device : uint8_t { cpu, cuda };
// e4m3 and e5m2: the OCP FP8 formats (one byte; CUDA storage of record #26's FP8 head,
// kernels/ops/fp8_head.cu; the CPU emulates them in f32, ops.h "FP8 emulation").
enum class DType : uint8_t { f32, f64, bf16, i32, u16, e4m3, e5m2 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::u16: return 2;
    case DType::e4m3: return 1;
    case DType::e5m2: return 1;
  }
  return 0;
}
const char* dtype_name(DType t);
const char* device_name(Device d);

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::f32; }
template <>
constexpr DType dtype_of<double>() { return DType::f64; }
template <>
constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <>
constexpr DType dtype_of<uint16_t>() { return DType::u16; }

struct Tensor {
  static constexpr int kMaxDims = 4;

  void* ptr = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int ndim = 0;
  std::array<int64_t, kMaxDims> dims{};

  Tensor() = default;
  Tensor(void* p, DType t, Device d, std::initializer_list<int64_t> shape);

  template <class T>
  static Tensor of(T* p, std::initializer_list<int64_t> shape, Device d = Device::cpu) {
    return Tensor(const_cast<std::remove_const_t<T>*>(p), dtype_of<std::remove_const_t<T>>(), d, shape);
  }

  bool empty() const { return ptr == nullptr; }
  int64_t numel() const;
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  // size(-1) is the last dimension.
  int64_t size(int i) const;
  // The product of all dimensions but the last: the number of rows.
  int64_t rows() const { return ndim == 0 ? 1 : numel() / size(-1); }

  // Typed pointer; throws std::logic_error when T does not match dtype.
  template <class T>
  T* data() const {
    if (dtype_of<T>() != dtype) throw std::logic_error(std::string("tensor dtype is ") + dtype_name(dtype));
    return static_cast<T*>(ptr);
  }

  // The same memory with another shape of the same numel.
  Tensor reshaped(std::initializer_list<int64_t> shape) const;
  // Rows [begin, end) of the first dimension.
  Tensor slice_rows(int64_t begin, int64_t end) const;

  std::string shape_string() const;  // "(64, 1024, 768)"
};

}  // namespace speedrun
