// Small file-system helpers whose errors name the path and the reason.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace speedrun {

// Reads a whole file; throws UserError("cannot read <path>: <reason>") on failure.
std::string read_text_file(const std::filesystem::path& path);

// Writes `contents` to `path` atomically (write to a temporary sibling, then rename),
// so a crash never leaves a half-written file behind. Throws UserError on failure.
void write_text_file_atomic(const std::filesystem::path& path, const std::string& contents);

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
