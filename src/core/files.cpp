#include "core/files.h"

#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "core/error.h"

namespace speedrun {

namespace fs = std::filesystem;

std::vector<fs::path> project_file_candidates(const fs::path& relative) {
  std::vector<fs::path> out;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back((exe.parent_path() / ".." / relative).lexically_normal());
#ifdef SPEEDRUN_SOURCE_DIR
  out.push_back(fs::path(SPEEDRUN_SOURCE_DIR) / relative);
#endif
  return out;
}

std::string errno_string(int err) {
  char buf[256];
  // GNU strerror_r returns a pointer that may or may not be `buf`.
  const char* msg = strerror_r(err, buf, sizeof buf);
  return msg;
}

std::string read_text_file(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw UserError("cannot read " + path.string() + ": it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("cannot read " + path.string() + ": " + errno_string(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw UserError("cannot read " + path.string() + ": I/O error");
  return ss.str();
}

void write_text_file_atomic(const fs::path& path, const std::string& contents) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw UserError("cannot write " + tmp.string() + ": " + errno_string(errno));
    out << contents;
    out.flush();
    if (!out) throw UserError("cannot write " + tmp.string() + ": " + errno_string(errno));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw UserError("cannot write " + path.string() + ": " + ec.message());
  }
}

namespace {
// glob(3)'s error callback has no user pointer; matching runs on one thread at a time
// under this lock, so the first failure can be kept in statics.
std::mutex glob_mutex;
std::string glob_error_path;
int glob_error_errno = 0;
int on_glob_error(const char* path, int err) {
  if (err == ENOENT || err == ENOTDIR) return 0;  // nothing there to match: not an error
  if (glob_error_path.empty()) glob_error_path = path, glob_error_errno = err;
  return 1;  // stop (EACCES, EIO...): a partial match would silently leave files out
}
}  // namespace

std::vector<fs::path> glob_sorted(const std::string& pattern) {
  std::lock_guard<std::mutex> lock(glob_mutex);
  glob_error_path.clear();
  glob_t g{};
  std::vector<fs::path> out;
  const int rc = ::glob(pattern.c_str(), GLOB_NOSORT, on_glob_error, &g);
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  if (rc == GLOB_ABORTED)
    throw UserError("cannot match '" + pattern + "': cannot read directory " +
                    (glob_error_path.empty() ? std::string("(unknown)") : glob_error_path) + ": " +
                    errno_string(glob_error_errno));
  if (rc == GLOB_NOSPACE) throw UserError("cannot match '" + pattern + "': out of memory");
  // Sorted by the full path string, as Python's sorted(Path.glob(...)) does upstream.
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) { return a.string() < b.string(); });
  return out;
}

void ensure_writable_directory(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw UserError("cannot use " + dir.string() + " as a directory: a file of that name exists");
  fs::create_directories(dir, ec);
  if (ec) throw UserError("cannot create directory " + dir.string() + ": " + ec.message());
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw UserError("cannot write into directory " + dir.string() + ": " + errno_string(errno));
}

}  // namespace speedrun
