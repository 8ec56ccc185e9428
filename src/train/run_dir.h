// The run directory: out_dir/<run name>/ holding config.json (the resolved config),
// metrics.jsonl, log.txt and summary.json. An existing run is never overwritten
// unless asked (--force), and --force only ever removes a directory that is a run.
#pragma once

#include <filesystem>
#include <string>

namespace speedrun::train {

// "<config name>-YYYYmmdd-HHMMSS" in local time.
std::string default_run_name(const std::string& config_name);

// Creates out_dir/run_name. Throws UserError when the name is not a plain name, when
// the directory exists (without `force`), or when it cannot be created or written.
// `force` replaces a run directory (one with a config.json, or with nothing but the
// hidden temporaries of a run killed while writing it, see is_atomic_temporary).
std::filesystem::path create_run_dir(const std::filesystem::path& out_dir, const std::string& run_name, bool force);

// The refusals of create_run_dir (a name that is not plain; an existing directory
// without `force`, or one that is not a run) without creating or removing anything: the
// trainer asks first, so that a refused run prints nothing else (no memory plan).
void check_run_dir_free(const std::filesystem::path& out_dir, const std::string& run_name, bool force);

}  // namespace speedrun::train
