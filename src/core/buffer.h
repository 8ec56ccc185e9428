// Buffer: owns one zero-initialized allocation on a device. Flat parameter, gradient,
// optimizer-state and activation buffers are Buffers carved into Tensor views.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace speedrun {

class Buffer {
 public:
  Buffer() = default;
  Buffer(Device device, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  void zero();

 private:
  void release();
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::cpu;
};

// Sequential allocation of views inside one Buffer, 64-byte aligned. `plan` mode
// (no buffer yet) only adds up the bytes, so the same code sizes and then carves.
class Arena {
 public:
  explicit Arena(Device device) : device_(device) {}
  // Reserves a tensor; before `allocate()` it only counts bytes.
  Tensor take(DType dtype, std::initializer_list<int64_t> shape);
  // Allocates the buffer for everything taken so far and resets the cursor: take the
  // same tensors again, in the same order, to get their views.
  void allocate();
  size_t bytes() const { return planned_; }

 private:
  Device device_;
  Buffer buffer_;
  size_t cursor_ = 0;
  size_t planned_ = 0;
  bool allocated_ = false;
};

}  // namespace speedrun
