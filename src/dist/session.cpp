#include "dist/session.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

#include "build_info.h"
#include "core/error.h"
#include "core/hash.h"

#if SPEEDRUN_HAVE_MPI
#include <mpi.h>
#endif

namespace speedrun::dist {

namespace {

// Preformatted in the constructor: a signal handler may only call async-signal-safe
// functions (write, signal, raise), so nothing is formatted inside it.
char g_signal_prefix[64] = "rank ?: ";

void on_fatal_signal(int sig) {
  const char* name = sig == SIGSEGV   ? "SIGSEGV"
                     : sig == SIGBUS  ? "SIGBUS"
                     : sig == SIGFPE  ? "SIGFPE"
                     : sig == SIGILL  ? "SIGILL"
                     : sig == SIGABRT ? "SIGABRT"
                     : sig == SIGTERM ? "SIGTERM"
                     : sig == SIGINT  ? "SIGINT"
                                      : "a signal";
  ssize_t ignored = write(STDERR_FILENO, g_signal_prefix, std::strlen(g_signal_prefix));
  ignored = write(STDERR_FILENO, "killed by ", 10);
  ignored = write(STDERR_FILENO, name, std::strlen(name));
  ignored = write(STDERR_FILENO, "\n", 1);
  (void)ignored;
  // Die of the signal itself: the launcher sees an abnormal end and kills the others.
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void install_signal_handlers(int rank) {
  std::snprintf(g_signal_prefix, sizeof g_signal_prefix, "rank %d: ", rank);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTERM, SIGINT}) std::signal(sig, on_fatal_signal);
}

}  // namespace

Session::Session() : launch_(detect_launch()) {
  if (launch_.under_mpi) {
#if SPEEDRUN_HAVE_MPI
    // Only the main thread calls MPI (OpenMP threads never do).
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    mpi_started_ = true;
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (launch_.launcher == "PMIx" || launch_.world != world || launch_.rank != rank) {
      // MPI is authoritative; the environment only told us to start it.
      if (launch_.launcher != "PMIx")
        spdlog::warn("launch environment ({}) says rank {}/{} but MPI says {}/{}; using MPI's", launch_.launcher,
                     launch_.rank, launch_.world, rank, world);
      launch_.rank = rank, launch_.world = world;
    }
    // The ranks sharing this node's memory: they share its cores (see train.threads).
    MPI_Comm node = MPI_COMM_NULL;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &launch_.local_size);
    // The rank within the node, from MPI itself: launchers that export no local rank
    // (srun --mpi=pmix sets PMIX_RANK only) would otherwise put every rank on GPU 0.
    int node_rank = 0;
    MPI_Comm_rank(node, &node_rank);
    if (launch_.local_rank != node_rank && launch_.launcher != "PMIx")
      spdlog::warn("launch environment ({}) says local rank {} but MPI's node communicator says {}; using MPI's",
                   launch_.launcher, launch_.local_rank, node_rank);
    launch_.local_rank = node_rank;
    MPI_Comm_free(&node);
#else
    if (launch_.world > 1)
      throw UserError("started by " + launch_.launcher + " with " + std::to_string(launch_.world) +
                      " processes, but this speedrun was built without MPI (install Open MPI and rebuild)");
#endif
  } else if (launch_.world > 1) {
    throw UserError("RANK/WORLD_SIZE ask for " + std::to_string(launch_.world) +
                    " processes (torchrun-style), but speedrun forms its process group through MPI: launch with "
                    "mpirun -np " + std::to_string(launch_.world) + " instead");
  }
  if (launch_.world > 1) {
    install_signal_handlers(launch_.rank);
    // One copy of the run's log lines: other ranks print warnings and errors only.
    if (launch_.rank != 0 && spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);
  }
}

Session::~Session() {
#if SPEEDRUN_HAVE_MPI
  if (mpi_started_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
#endif
}

std::string communicator_choice() {
  const char* text = std::getenv("SPEEDRUN_COMMUNICATOR");
  const std::string choice = text == nullptr || *text == '\0' ? "auto" : text;
  if (choice != "auto" && choice != "mpi" && choice != "nccl")
    throw UserError("SPEEDRUN_COMMUNICATOR='" + choice + "': expected auto, mpi or nccl");
  return choice;
}

std::unique_ptr<Communicator> Session::make_communicator(Device device) const {
  const std::string choice = communicator_choice();
  if (choice == "nccl" && device != Device::cuda)
    throw UserError("SPEEDRUN_COMMUNICATOR=nccl needs the CUDA device (this run is on " +
                    std::string(device_name(device)) + ")");
  // One process: no communication (also under mpirun -np 1), unless NCCL is asked for
  // (the GPU check that NCCL starts and changes nothing: scripts/cuda_check.sh).
  if (launch_.world == 1 && !(choice == "nccl" && mpi_started_)) return make_local_communicator();
  std::unique_ptr<Communicator> mpi = make_mpi_communicator();
  check_same_on_all_ranks(*mpi, binary_identity(), "speedrun binary (" + binary_identity() + " on this rank)",
                          "every node must run the same build of speedrun (the same commit, built the same way)");
  if (device == Device::cuda && choice != "mpi") return make_nccl_communicator(std::move(mpi), launch_.local_rank);
  return mpi;
}

void Session::abort_job(const std::string& message) const {
  std::fprintf(stderr, "rank %d: %s\n", launch_.rank, message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
#if SPEEDRUN_HAVE_MPI
  if (mpi_started_) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  std::_Exit(1);
}

std::string binary_identity() {
  return std::string("speedrun ") + SPEEDRUN_VERSION + " (commit " + SPEEDRUN_GIT_COMMIT + ", " + SPEEDRUN_BUILD_TYPE +
         ", CUDA " + std::to_string(SPEEDRUN_HAVE_CUDA) + ", NCCL " + std::to_string(SPEEDRUN_HAVE_NCCL) + ", MPI " +
         std::to_string(SPEEDRUN_HAVE_MPI) + ")";
}

std::string device_label(Device device, const LaunchInfo& launch, const std::string& communicator) {
  if (device != Device::cuda) return device_name(device);
  // Only the NCCL communicator selects a GPU (its local rank's); otherwise the process
  // stays on the default device 0.
  return "cuda:" + std::to_string(communicator == "nccl" ? launch.local_rank : 0);
}

void check_same_on_all_ranks(Communicator& comm, const std::string& text, const std::string& what,
                             const std::string& remedy) {
  const int world = comm.world();
  if (world == 1) return;
  // Two 32-bit halves, each exact in a double (the communicator moves f32/f64).
  const uint64_t h = fnv1a_64(text);
  double mine[2] = {static_cast<double>(h >> 32), static_cast<double>(h & 0xffffffffu)};
  std::vector<double> all(2 * static_cast<size_t>(world));
  comm.all_gather(Tensor::of(mine, {2}), Tensor::of(all.data(), {2 * static_cast<int64_t>(world)}));
  std::string differing;
  for (int r = 1; r < world; ++r)
    if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  if (!differing.empty())
    throw UserError("the " + what + " differs across ranks: rank(s) " + differing +
                    " differ from rank 0; " + remedy);
}

}  // namespace speedrun::dist
