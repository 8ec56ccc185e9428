#include "core/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>

#include "core/device_memory.h"

namespace speedrun {

Buffer::Buffer(Device device, size_t bytes) : bytes_(bytes), device_(device) {
  if (bytes == 0) return;
  if (device == Device::cpu) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    ptr_ = std::aligned_alloc(64, rounded);
    if (!ptr_) throw std::bad_alloc();
  } else {
    ptr_ = device_alloc(bytes);
  }
  zero();
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)), device_(other.device_) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
  }
  return *this;
}

void Buffer::release() {
  if (!ptr_) return;
  if (device_ == Device::cpu) std::free(ptr_);
  else device_free(ptr_);
  ptr_ = nullptr;
}

void Buffer::zero() {
  if (!ptr_) return;
  if (device_ == Device::cpu) std::memset(ptr_, 0, bytes_);
  else device_memset_zero(ptr_, bytes_);
}

Tensor Arena::take(DType dtype, std::initializer_list<int64_t> shape) {
  Tensor t(nullptr, dtype, device_, shape);
  const size_t aligned = (t.bytes() + 63) / 64 * 64;
  if (!allocated_) {
    planned_ += aligned;
  } else {
    if (cursor_ + aligned > buffer_.bytes()) throw std::logic_error("Arena: more taken than planned");
    t.ptr = static_cast<char*>(buffer_.data()) + cursor_;
  }
  cursor_ += aligned;
  return t;
}

void Arena::allocate() {
  buffer_ = Buffer(device_, planned_);
  allocated_ = true;
  cursor_ = 0;
}

}  // namespace speedrun
