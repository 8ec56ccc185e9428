// One process's part in a run: reads the launch (dist/launch.h), starts MPI when an
// MPI launcher started us (a plain `speedrun train` never touches MPI), makes the
// communicator for the run's device, and makes any failure end the whole job:
// an exception is reported as "rank R: error: ..." and aborts every rank through
// MPI_Abort; a fatal signal is reported and re-raised, and the launcher then ends
// the others (mpirun does so for a rank that dies without MPI_Finalize).
#pragma once

#include <memory>
#include <string>

#include "core/tensor.h"
#include "dist/communicator.h"
#include "dist/launch.h"

namespace speedrun::dist {

class Session {
 public:
  // Throws UserError when the environment asks for several processes that this build
  // or launch cannot provide (no MPI; torchrun-style variables without mpirun).
  Session();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const LaunchInfo& launch() const { return launch_; }
  int rank() const { return launch_.rank; }
  int world() const { return launch_.world; }

  // Local for one process; MPI for the CPU backend; NCCL (with MPI for host buffers)
  // for CUDA. SPEEDRUN_COMMUNICATOR overrides the choice: "mpi" on CUDA stages device
  // buffers through the host (several ranks sharing one GPU, which NCCL refuses); "nccl"
  // makes NCCL even for one process under mpirun; "auto" (default) as above. Another
  // value, or "nccl" off CUDA, is a UserError. With several processes it first checks that every rank runs the same
  // binary (binary_identity), before NCCL starts: UserError naming the ranks that differ.
  std::unique_ptr<Communicator> make_communicator(Device device) const;

  // Prints "rank R: <message>" to stderr and ends every rank of the job with exit
  // status 1. Only for world > 1; one process reports errors the ordinary way.
  [[noreturn]] void abort_job(const std::string& message) const;

 private:
  LaunchInfo launch_;
  bool mpi_started_ = false;
};

// Throws UserError on every rank when the ranks' `text` (the resolved config) differ,
// naming the ranks that differ from rank 0 and ending with `remedy`: each rank's FNV-1a
// hash is all-gathered.
void check_same_on_all_ranks(Communicator& comm, const std::string& text, const std::string& what,
                             const std::string& remedy = "every rank must get the same config file and --set overrides");

// What this binary is: version, commit, build type and backends (build_info.h), e.g.
// "speedrun 0.1.0 (commit af3c3b774a42, Release, CUDA 1, NCCL 1, MPI 1)".
std::string binary_identity();

// The device this rank computes on, for its identity line: "cpu", or "cuda:<i>" (GPU i of
// the node: the local rank under the NCCL communicator, which selects it; else 0).
std::string device_label(Device device, const LaunchInfo& launch, const std::string& communicator);

}  // namespace speedrun::dist
