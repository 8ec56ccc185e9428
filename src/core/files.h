// Small file-system helpers whose errors name the path and the reason.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace speedrun {

// Reads a whole file; throws UserError("cannot read <path>: <reason>") on failure.
std::string read_text_file(const std::filesystem::path& path);

// A file that, under its final name, is complete or absent: the one way the product
// writes a whole file (summaries, configs, parameters, shards, comparison outputs,
// bench JSON). The bytes go to a temporary sibling, `.<name>.tmp-<pid>-<n>` (hidden,
// so that no glob such as `*.bin` or `*` picks it up, see is_atomic_temporary);
// commit() fsyncs it, closes it (checking close's error: on NFS or a full disk the
// error may only show there), renames it over `path` and fsyncs the directory, so the
// new file survives a crash or power loss. Without commit() — an exception, a failed
// write — the destructor removes the temporary: whatever `path` held before (a user's
// file, an earlier run's output) is untouched. A kill -9 at any moment leaves the old
// file or the complete new one, plus at most a hidden temporary.
// Every failure throws UserError "cannot write <path>: <strerror> (<stage>)".
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path path);  // creates the temporary; throws UserError
  ~AtomicFile();                                     // not committed: closes and removes the temporary
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);  // all of it, or throws
  void write(std::string_view text) { write(text.data(), text.size()); }
  void commit();  // fsync, close, rename over path(), fsync the directory; throws UserError
  const std::filesystem::path& path() const { return path_; }

 private:
  [[noreturn]] void fail(int err, const char* stage);
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
};

// write_file_atomic(path, [&](AtomicFile& f) { f.write(...); ... }): runs `writer` on
// an AtomicFile for `path` and commits it. If `writer` throws, nothing is renamed.
template <class Writer>
void write_file_atomic(const std::filesystem::path& path, Writer&& writer) {
  AtomicFile file(path);
  writer(file);
  file.commit();
}

// write_file_atomic for a string.
void write_text_file_atomic(const std::filesystem::path& path, std::string_view contents);

// Test-only fault injection, compiled in and inert unless set, so that tests can make
// a write fail the way a full disk does without needing one:
//   SPEEDRUN_TEST_FAIL_WRITE=<s>        every AtomicFile / AppendFile whose file name
//                                       contains <s> fails, with ENOSPC ...
//   SPEEDRUN_TEST_FAIL_WRITE_AT=<stage> ... at `write` (the default: after writing half
//                                       of the first chunk, as a disk filling up does),
//                                       `sync`, `close` or `rename` (EIO there).
// Nothing in the product sets them.

// True for the name of an AtomicFile temporary (`.<name>.tmp-<pid>-<n>`): what a
// killed writer leaves behind. Run-directory checks treat these as ours, not a user's.
bool is_atomic_temporary(const std::filesystem::path& path);

// An append-only stream of text lines (metrics.jsonl, log.txt), which cannot be
// written atomically as a whole: instead each line is one write(2) of the complete
// line with its '\n' on an O_APPEND descriptor, checked. A failed or short write is
// cut back off (ftruncate to the length before it), so the file holds whole lines
// only, and throws UserError "cannot write <path>: <strerror>". A kill -9 can at most
// lose the line being written. sync() fsyncs what was written.
class AppendFile {
 public:
  AppendFile() = default;
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  void open(const std::filesystem::path& path);  // creates or appends; throws UserError
  void append_line(std::string_view line);       // `line` without its '\n'; throws UserError
  void sync();                                   // fsync; throws UserError
  void close();                                  // checked; throws UserError
  bool is_open() const { return fd_ >= 0; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// Expands a glob pattern (`*`, `?`, `[...]` in the file-name part and in directory
// parts) into the sorted list of every matching path, whatever its type (directories
// included: the caller decides, so that nothing matched is dropped unseen). No match
// returns empty; a directory that cannot be read while matching throws UserError
// naming it, rather than matching less than the pattern says.
std::vector<std::filesystem::path> glob_sorted(const std::string& pattern);

// Creates `dir` (and parents) and checks that we can write into it. Throws UserError
// naming the directory when it cannot be created or is not writable.
void ensure_writable_directory(const std::filesystem::path& dir);

// Where a file shipped with the project (data/gpt2/..., scripts/...) may be, most
// preferred first: next to the running binary (<exe dir>/../relative), then in the
// source tree it was built from.
std::vector<std::filesystem::path> project_file_candidates(const std::filesystem::path& relative);

// The text of errno as a string (strerror_r wrapper).
std::string errno_string(int err);

}  // namespace speedrun
