// FNV-1a, 64-bit: a stable content hash (not cryptographic) for "is this the same
// config?" checks -- across the ranks of a run and across reruns of a comparison.
#pragma once

#include <cstdint>
#include <string_view>

namespace speedrun {

inline uint64_t fnv1a_64(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;  // the FNV-1a 64-bit offset basis
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace speedrun
