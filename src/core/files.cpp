#include "core/files.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
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

namespace {

std::atomic<uint64_t> g_temporaries{0};

// The errno that SPEEDRUN_TEST_FAIL_WRITE(_AT) injects at `stage` of writing `path`,
// or 0 (see files.h). Read at every call so that a test can set it in-process.
int injected_fault(const fs::path& path, std::string_view stage) {
  const char* name = std::getenv("SPEEDRUN_TEST_FAIL_WRITE");
  if (name == nullptr || *name == '\0' || path.filename().string().find(name) == std::string::npos) return 0;
  const char* at = std::getenv("SPEEDRUN_TEST_FAIL_WRITE_AT");
  const std::string_view want = at != nullptr && *at != '\0' ? at : "write";
  if (want != stage) return 0;
  return stage == "rename" ? EIO : ENOSPC;
}

// Writes all `n` bytes (retrying after EINTR and short writes); 0 or the errno.
int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

// Writes `n` bytes of `p` to `fd` for the file `path`, with the test-only fault: a
// failing write stores half the bytes first, as a disk that fills up midway does.
int checked_write(int fd, const fs::path& path, const char* p, size_t n) {
  if (const int err = injected_fault(path, "write")) {
    write_all(fd, p, n / 2);
    return err;
  }
  return write_all(fd, p, n);
}

// fsync of a directory makes a rename in it durable. Filesystems that cannot sync a
// directory say EINVAL; there is nothing more to do on them.
int fsync_directory(const fs::path& dir) {
  const fs::path d = dir.empty() ? fs::path(".") : dir;
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = ::fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
  ::close(fd);
  return err;
}

}  // namespace

AtomicFile::AtomicFile(fs::path path) : path_(std::move(path)) {
  const std::string name = path_.filename().string();
  if (name.empty() || name == "." || name == "..") throw UserError("cannot write " + path_.string() + ": not a file name");
  tmp_ = path_.parent_path() /
         ("." + name + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(g_temporaries.fetch_add(1)));
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    const int err = errno;
    throw UserError("cannot write " + path_.string() + ": " + errno_string(err) + " (creating its temporary " +
                    tmp_.string() + ")");
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::fail(int err, const char* stage) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  tmp_.clear();
  throw UserError("cannot write " + path_.string() + ": " + errno_string(err) + " (" + stage + ")");
}

void AtomicFile::write(const void* data, size_t bytes) {
  if (fd_ < 0) throw std::logic_error("AtomicFile::write after commit or failure: " + path_.string());
  if (const int err = checked_write(fd_, path_, static_cast<const char*>(data), bytes)) fail(err, "while writing");
}

void AtomicFile::commit() {
  if (fd_ < 0) throw std::logic_error("AtomicFile::commit twice or after failure: " + path_.string());
  int err = injected_fault(path_, "sync");
  if (err == 0 && ::fsync(fd_) != 0) err = errno;
  if (err != 0) fail(err, "at fsync");
  // After a successful fsync, EINTR from close has lost nothing (Linux releases the
  // descriptor either way); any other close error is a write that did not happen.
  err = ::close(fd_) == 0 || errno == EINTR ? 0 : errno;
  fd_ = -1;
  if (err == 0) err = injected_fault(path_, "close");
  if (err != 0) fail(err, "at close");
  err = injected_fault(path_, "rename");
  if (err == 0 && ::rename(tmp_.c_str(), path_.c_str()) != 0) err = errno;
  if (err != 0) fail(err, "renaming its temporary over it");
  tmp_.clear();  // it is path_ now
  if (const int dir_err = fsync_directory(path_.parent_path()))
    throw UserError("cannot write " + path_.string() + ": " + errno_string(dir_err) + " (at fsync of its directory)");
}

void write_text_file_atomic(const fs::path& path, std::string_view contents) {
  write_file_atomic(path, [&](AtomicFile& f) { f.write(contents); });
}

bool is_atomic_temporary(const fs::path& path) {
  // ".<name>.tmp-<pid>-<n>"
  const std::string s = path.filename().string();
  const size_t mark = s.rfind(".tmp-");
  if (s.size() < 2 || s[0] != '.' || mark == std::string::npos || mark < 2) return false;
  const std::string tail = s.substr(mark + 5);
  const size_t dash = tail.find('-');
  const auto digits = [](std::string_view d) {
    return !d.empty() && std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  return dash != std::string::npos && digits(std::string_view(tail).substr(0, dash)) &&
         digits(std::string_view(tail).substr(dash + 1));
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::open(const fs::path& path) {
  if (fd_ >= 0) ::close(fd_);
  path_ = path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd_ < 0) throw UserError("cannot write " + path.string() + ": " + errno_string(errno));
}

void AppendFile::append_line(std::string_view line) {
  if (fd_ < 0) throw std::logic_error("AppendFile::append_line on a closed file");
  std::string record;
  record.reserve(line.size() + 1);
  record.append(line);
  record += '\n';
  struct stat st{};
  const off_t before = ::fstat(fd_, &st) == 0 ? st.st_size : -1;
  if (const int err = checked_write(fd_, path_, record.data(), record.size())) {
    // Cut the partial line back off, so that the file holds whole lines only (should
    // even that fail, the write's error is still the one to report).
    const int cut = before >= 0 ? ::ftruncate(fd_, before) : 0;
    (void)cut;
    throw UserError("cannot write " + path_.string() + ": " + errno_string(err));
  }
}

void AppendFile::sync() {
  if (fd_ < 0) return;
  int err = injected_fault(path_, "sync");
  if (err == 0 && ::fsync(fd_) != 0) err = errno;
  if (err != 0) throw UserError("cannot write " + path_.string() + ": " + errno_string(err) + " (at fsync)");
}

void AppendFile::close() {
  if (fd_ < 0) return;
  int err = ::close(fd_) == 0 || errno == EINTR ? 0 : errno;
  fd_ = -1;
  if (err == 0) err = injected_fault(path_, "close");
  if (err != 0) throw UserError("cannot write " + path_.string() + ": " + errno_string(err) + " (at close)");
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
