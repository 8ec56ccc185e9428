#include "dist/launch.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "core/error.h"

namespace speedrun::dist {

namespace {

// The integer value of variable `name`, or `fallback` when it is unset.
int read_int(const std::function<const char*(const char*)>& getenv, const char* name, int fallback) {
  const char* text = getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  const std::string_view s(text);
  int value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || value < 0)
    throw UserError("environment variable " + std::string(name) + "='" + std::string(s) +
                    "' is not a non-negative integer");
  return value;
}

bool is_set(const std::function<const char*(const char*)>& getenv, const char* name) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0';
}

}  // namespace

LaunchInfo detect_launch(const std::function<const char*(const char*)>& getenv) {
  LaunchInfo info;
  // torchrun-style variables first; an MPI launcher's own variables override them.
  const int torch_local = read_int(getenv, "LOCAL_RANK", 0);
  if (is_set(getenv, "WORLD_SIZE") || is_set(getenv, "RANK")) {
    info.rank = read_int(getenv, "RANK", 0);
    info.world = read_int(getenv, "WORLD_SIZE", 1);
    info.local_rank = torch_local;
    info.launcher = "torchrun-style";
  }
  if (is_set(getenv, "OMPI_COMM_WORLD_SIZE")) {
    info.rank = read_int(getenv, "OMPI_COMM_WORLD_RANK", 0);
    info.world = read_int(getenv, "OMPI_COMM_WORLD_SIZE", 1);
    info.local_rank = read_int(getenv, "OMPI_COMM_WORLD_LOCAL_RANK", torch_local);
    info.under_mpi = true;
    info.launcher = "Open MPI";
  } else if (is_set(getenv, "PMI_SIZE")) {
    info.rank = read_int(getenv, "PMI_RANK", 0);
    info.world = read_int(getenv, "PMI_SIZE", 1);
    info.local_rank = read_int(getenv, "MPI_LOCALRANKID", read_int(getenv, "PMI_LOCAL_RANK", torch_local));
    info.under_mpi = true;
    info.launcher = "MPICH/PMI";
  } else if (is_set(getenv, "PMIX_RANK")) {
    // PMIx exposes the rank; the size comes from MPI_Comm_size after MPI_Init.
    info.rank = read_int(getenv, "PMIX_RANK", 0);
    info.world = std::max(info.world, info.rank + 1);
    info.under_mpi = true;
    info.launcher = "PMIx";
  }
  if (info.world < 1 || info.rank >= info.world)
    throw UserError("launch environment (" + info.launcher + "): rank " + std::to_string(info.rank) +
                    " is outside a world of " + std::to_string(info.world) + " process(es)");
  return info;
}

LaunchInfo detect_launch() {
  return detect_launch([](const char* name) -> const char* { return std::getenv(name); });
}

std::string identity_line(const LaunchInfo& launch, const std::string& what) {
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  return "speedrun rank " + std::to_string(launch.rank) + "/" + std::to_string(launch.world) + " (local rank " +
         std::to_string(launch.local_rank) + ") on host " + host + ", pid " + std::to_string(getpid()) + ": " + what;
}

}  // namespace speedrun::dist
