#include "core/host_memory.h"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/format_bytes.h"

namespace speedrun {

namespace {

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int64_t parse_integer(const std::string& text) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    return v < 0 ? -1 : v;
  } catch (const std::exception&) {
    return -1;
  }
}

// Folds one limit into `m`: `left` bytes may still be allocated under it; `what`
// describes it in m.limits.
void add_limit(HostMemory& m, const std::string& what, int64_t left) {
  if (left < 0) left = 0;
  m.available = std::min(m.available, static_cast<size_t>(left));
  m.limits += (m.limits.empty() ? "" : "; ") + what;
}

// "<name> <limit> with <used> in use: <left> left".
std::string describe(const std::string& name, int64_t limit, int64_t used) {
  return name + " " + format_bytes(static_cast<size_t>(limit)) + " with " + format_bytes(static_cast<size_t>(used)) +
         " in use: " + format_bytes(static_cast<size_t>(std::max<int64_t>(0, limit - used))) + " left";
}

// cgroup v2: this process's cgroup (from /proc/self/cgroup, "0::/path") and each
// ancestor up to the root may set memory.max; the tightest one binds.
void add_cgroup_v2(HostMemory& m) {
  const std::string self = read_small_file("/proc/self/cgroup");
  std::string path;
  std::istringstream lines(self);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  bool found = false;
  int64_t best_max = 0, best_current = 0;
  std::string best_dir;
  for (std::string dir = path;; dir = dir.substr(0, dir.find_last_of('/'))) {
    const std::string base = "/sys/fs/cgroup" + (dir == "/" ? std::string() : dir);
    const int64_t max = parse_cgroup_limit(read_small_file(base + "/memory.max"));
    if (max >= 0) {
      const int64_t current = std::max<int64_t>(0, parse_integer(read_small_file(base + "/memory.current")));
      if (!found || max - current < best_max - best_current) best_max = max, best_current = current, best_dir = base;
      found = true;
    }
    if (dir.empty() || dir == "/" || dir.find('/') == std::string::npos) break;
  }
  if (found)
    add_limit(m, describe("cgroup limit " + best_dir + "/memory.max", best_max, best_current), best_max - best_current);
}

// cgroup v1: a limit near 2^63 means none.
void add_cgroup_v1(HostMemory& m) {
  const std::string dir = "/sys/fs/cgroup/memory";
  const int64_t limit = parse_integer(read_small_file(dir + "/memory.limit_in_bytes"));
  if (limit < 0 || limit >= (int64_t{1} << 60)) return;
  const int64_t usage = std::max<int64_t>(0, parse_integer(read_small_file(dir + "/memory.usage_in_bytes")));
  add_limit(m, describe("cgroup limit " + dir + "/memory.limit_in_bytes", limit, usage), limit - usage);
}

void add_rlimit(HostMemory& m, int resource, const char* name, const std::string& status, const char* used_key) {
  rlimit r{};
  if (getrlimit(resource, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return;
  const int64_t used = std::max<int64_t>(0, parse_kib_field(status, used_key));
  const auto limit = static_cast<int64_t>(std::min<rlim_t>(r.rlim_cur, INT64_MAX));
  add_limit(m, describe(std::string(name) + " (" + used_key + ")", limit, used), limit - used);
}

}  // namespace

int64_t parse_kib_field(const std::string& text, const std::string& key) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(key + ":", 0) != 0) continue;
    const int64_t kib = parse_integer(line.substr(key.size() + 1));
    return kib < 0 ? -1 : kib * 1024;
  }
  return -1;
}

int64_t parse_cgroup_limit(const std::string& text) {
  if (text.empty() || text.rfind("max", 0) == 0) return -1;
  return parse_integer(text);
}

HostMemory query_host_memory() {
  HostMemory m;
  const std::string meminfo = read_small_file("/proc/meminfo");
  if (const int64_t total = parse_kib_field(meminfo, "MemTotal"); total > 0) m.total = static_cast<size_t>(total);
  if (const int64_t avail = parse_kib_field(meminfo, "MemAvailable"); avail >= 0)
    add_limit(m, "MemAvailable " + format_bytes(static_cast<size_t>(avail)) + " of MemTotal " + format_bytes(m.total),
              avail);
  add_cgroup_v2(m);
  add_cgroup_v1(m);
  const std::string status = read_small_file("/proc/self/status");
  add_rlimit(m, RLIMIT_DATA, "RLIMIT_DATA", status, "VmData");
  add_rlimit(m, RLIMIT_AS, "RLIMIT_AS", status, "VmSize");
  return m;
}

}  // namespace speedrun
