// speedrun info: version, build features and the CUDA devices this process sees.
#include <cblas.h>

#include <cstdio>
#include <string>
#include <thread>

#include <omp.h>

#include "build_info.h"
#if SPEEDRUN_HAVE_MPI
#include <mpi.h>
#endif
#include "cli/commands.h"
#include "core/cuda_info.h"

namespace speedrun::cli {

static std::string yes_no(bool b) { return b ? "yes" : "no"; }

static void run_info() {
  std::printf("speedrun %s (commit %s, %s build)\n", SPEEDRUN_VERSION, SPEEDRUN_GIT_COMMIT, SPEEDRUN_BUILD_TYPE);
  const CudaStatus cuda = query_cuda();
  std::printf("build features:\n");
  std::printf("  CUDA    %s", yes_no(SPEEDRUN_HAVE_CUDA).c_str());
  if (SPEEDRUN_HAVE_CUDA)
    std::printf(" (runtime %s, %s, cuBLAS %s, cuSOLVER %s)", cuda.runtime_version.c_str(),
                cuda.driver_version == "none" ? "no NVIDIA driver" : ("driver " + cuda.driver_version).c_str(),
                cuda.cublas_version.c_str(), cuda.cusolver_version.c_str());
  std::printf("\n  NCCL    %s", yes_no(SPEEDRUN_HAVE_NCCL).c_str());
  if (!cuda.nccl_version.empty()) std::printf(" (%s)", cuda.nccl_version.c_str());
  std::printf("\n  MPI     %s", yes_no(SPEEDRUN_HAVE_MPI).c_str());
#if SPEEDRUN_HAVE_MPI
  char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpi_version, &len);
  std::string mpi(mpi_version, static_cast<size_t>(len));
  if (const size_t nl = mpi.find_first_of(",\n"); nl != std::string::npos) mpi.resize(nl);
  std::printf(" (%s)", mpi.c_str());
#endif
  std::printf("\n  BLAS    OpenBLAS (%s)\n", openblas_get_config());
  std::printf("  OpenMP  yes (%d threads, %u hardware threads)\n", omp_get_max_threads(),
              std::thread::hardware_concurrency());
  if (cuda.devices.empty()) {
    std::printf("no CUDA device: %s\n", cuda.no_device_reason.c_str());
    return;
  }
  std::printf("CUDA devices:\n");
  for (const CudaDevice& d : cuda.devices)
    std::printf("  [%d] %s, compute capability %d.%d, %d SMs, %.1f GiB (%.1f GiB free)\n", d.index, d.name.c_str(),
                d.cc_major, d.cc_minor, d.sm_count, d.total_memory / 1073741824.0, d.free_memory / 1073741824.0);
}

Command add_info_command(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("info", "print version, build features (CUDA, NCCL, MPI, BLAS) and CUDA devices");
  return {sub, run_info};
}

}  // namespace speedrun::cli
