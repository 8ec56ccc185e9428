// How much host memory this process may still allocate: the smallest of every limit
// that applies, so that a run too big for the machine is refused with the numbers
// before it allocates (instead of a std::bad_alloc midway or the kernel's OOM killer).
//   - /proc/meminfo MemAvailable (what the kernel can hand out without swapping);
//   - the cgroup's limit (v2: memory.max - memory.current of this process's cgroup and
//     its ancestors; v1: memory.limit_in_bytes - memory.usage_in_bytes), when set;
//   - RLIMIT_DATA and RLIMIT_AS (ulimit -d, -v) less what the process already uses
//     (VmData, VmSize in /proc/self/status), when set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace speedrun {

struct HostMemory {
  size_t available = SIZE_MAX;  // bytes this process may still allocate (SIZE_MAX: no limit found)
  size_t total = 0;             // MemTotal (0: unknown)
  std::string limits;           // every limit found, e.g. "MemAvailable 21.30 GiB; cgroup memory.max leaves 11.02 GiB"
};

HostMemory query_host_memory();

// Parsers, for tests: the value in bytes of a "Key:   123 kB" line of /proc/meminfo or
// /proc/self/status (-1 when absent); a cgroup v2 memory.max value ("max": -1).
int64_t parse_kib_field(const std::string& text, const std::string& key);
int64_t parse_cgroup_limit(const std::string& text);

}  // namespace speedrun
