// The convert op on the CPU: the CPU computes in one dtype (f32, or f64 in the
// finite-difference tests), so a conversion there is a copy; the f32 <-> bf16 conversions
// exist only on CUDA (kernels/ops/convert.cu).
#pragma once

#include <cstdint>
#include <cstring>

namespace speedrun::ops::cpu {

// dst = src, n elements; dst may equal src (nothing to do).
template <class T>
void convert(T* dst, const T* src, int64_t n) {
  if (dst != src && n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
}

}  // namespace speedrun::ops::cpu
