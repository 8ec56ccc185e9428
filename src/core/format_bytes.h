// One spelling of byte counts for every message: "1.23 GiB", "45.6 MiB". Header-only:
// the CUDA library (kernels/runtime/memory.cu) uses it too and links before the core library.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace speedrun {

inline std::string format_bytes(size_t bytes) {
  const double b = static_cast<double>(bytes);
  char text[32];
  if (b >= double(1ull << 30)) std::snprintf(text, sizeof text, "%.2f GiB", b / double(1ull << 30));
  else if (b >= double(1ull << 20)) std::snprintf(text, sizeof text, "%.1f MiB", b / double(1ull << 20));
  else if (b >= 1024.0) std::snprintf(text, sizeof text, "%.1f KiB", b / 1024.0);
  else std::snprintf(text, sizeof text, "%zu B", bytes);
  return text;
}

}  // namespace speedrun
