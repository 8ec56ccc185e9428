#include "train/run_dir.h"

#include <ctime>

#include "core/error.h"
#include "core/files.h"

namespace speedrun::train {

namespace fs = std::filesystem;

std::string default_run_name(const std::string& config_name) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &local);
  return config_name + "-" + stamp;
}

namespace {

// True for a directory holding nothing but AtomicFile temporaries: what a run killed
// while writing its config.json leaves behind (our files; nothing of the user's).
bool holds_only_temporaries(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (!is_atomic_temporary(it->path())) return false;
  return !ec;
}

}  // namespace

void check_run_dir_free(const fs::path& out_dir, const std::string& run_name, bool force) {
  if (run_name.empty() || run_name == "." || run_name == ".." || run_name.find('/') != std::string::npos)
    throw UserError("run name '" + run_name + "' must be a plain directory name (no '/', not '.' or '..')");
  const fs::path dir = out_dir / run_name;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  if (!force)
    throw UserError("run directory " + dir.string() +
                    " already exists; choose another --run-name, or pass --force to replace it");
  if (!fs::is_directory(dir, ec) || (!fs::exists(dir / "config.json", ec) && !holds_only_temporaries(dir)))
    throw UserError("refusing to replace " + dir.string() +
                    ": it is not a speedrun run directory (no config.json); remove it yourself");
}

fs::path create_run_dir(const fs::path& out_dir, const std::string& run_name, bool force) {
  check_run_dir_free(out_dir, run_name, force);
  ensure_writable_directory(out_dir);
  const fs::path dir = out_dir / run_name;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    fs::remove_all(dir, ec);
    if (ec) throw UserError("cannot remove old run directory " + dir.string() + ": " + ec.message());
  }
  ensure_writable_directory(dir);
  return dir;
}

}  // namespace speedrun::train
