// Where this process sits in a multi-process run, read from the launcher's
// environment: Open MPI (OMPI_COMM_WORLD_*), MPICH/Hydra and other PMI launchers
// (PMI_RANK, PMI_SIZE, MPI_LOCALRANKID), PMIx (PMIX_RANK), and torchrun-style
// RANK / WORLD_SIZE / LOCAL_RANK. MPI's own variables win over torchrun's, because
// under mpirun they are the ones MPI_Init will agree with.
#pragma once

#include <functional>
#include <string>

namespace speedrun::dist {

struct LaunchInfo {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  int local_size = 1;          // ranks on this node (known once MPI has started)
  bool under_mpi = false;      // started by an MPI launcher: MPI_Init is needed
  std::string launcher = "single process";  // "Open MPI", "MPICH/PMI", "PMIx", "torchrun-style", ...
};

// Reads the launch from `getenv` (the process environment by default; tests pass
// their own). Throws UserError naming the variable when one is not a number or the
// values are inconsistent (rank outside [0, world)).
LaunchInfo detect_launch(const std::function<const char*(const char*)>& getenv);
LaunchInfo detect_launch();

// "speedrun rank 1/4 (local rank 1) on host h, pid 123: <what>", the line every rank
// prints at start so that a job's output shows who took part.
std::string identity_line(const LaunchInfo& launch, const std::string& what);

}  // namespace speedrun::dist
