// Round-to-nearest-even fp32 -> bf16 bits and back on the host (NaN stays NaN): how the
// CUDA tests make bf16 inputs and read bf16 outputs.
#pragma once

#include <cstdint>
#include <cstring>

namespace speedrun::test {

inline uint16_t to_bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float from_bf16_bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace speedrun::test
