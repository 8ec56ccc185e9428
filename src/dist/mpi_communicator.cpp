// The MPI communicator: collectives on host buffers over a duplicate of
// MPI_COMM_WORLD (so that no other MPI traffic can interleave with ours). The
// non-blocking collectives are MPI-3's MPI_Iallreduce, MPI_Ireduce_scatter_block and
// MPI_Iallgather.
//
// Device buffers (CUDA runs with SPEEDRUN_COMMUNICATOR=mpi: several ranks sharing one
// GPU, where NCCL refuses) are staged through host copies: copied to the host after the
// work issued on the compute stream (device_copy synchronizes with it), reduced there, and
// copied back; their start_* forms are blocking (no overlap).
#include <algorithm>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "build_info.h"
#include "core/device_memory.h"
#include "dist/communicator.h"

#if SPEEDRUN_HAVE_MPI
#include <mpi.h>

namespace speedrun::dist {

namespace {

MPI_Datatype mpi_type(const Tensor& t, const char* op) {
  switch (t.dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    default: throw std::logic_error(std::string("mpi communicator: ") + op + " supports f32 and f64 only, got " +
                                    dtype_name(t.dtype));
  }
}

int int_count(int64_t n, const char* op) {
  if (n > INT_MAX)
    throw std::logic_error(std::string("mpi communicator: ") + op + " of " + std::to_string(n) +
                           " elements per rank exceeds MPI's int count");
  return static_cast<int>(n);
}

// MPI counts are ints: in-place reductions and broadcasts of larger buffers go in chunks.
constexpr int64_t kChunk = int64_t{1} << 30;

// Outstanding MPI requests. Destroying one waits: its buffers may not be reused before.
class MpiRequest final : public Request {
 public:
  explicit MpiRequest(std::vector<MPI_Request> requests) : requests_(std::move(requests)) {}
  ~MpiRequest() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) wait();
  }
  bool test() override {
    int done = 0;
    MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE);
    return done != 0;
  }
  void wait() override { MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE); }

 private:
  std::vector<MPI_Request> requests_;
};

// A host copy of a (device) tensor: copied in at construction (unless told not to) and
// back by back().
struct Staged {
  explicit Staged(const Tensor& t, bool copy_in = true) : bytes(t.bytes()), host((bytes + 7) / 8) {
    tensor = t;
    tensor.ptr = host.data();
    tensor.device = Device::cpu;
    if (copy_in && t.device != Device::cpu) device_copy(host.data(), t.ptr, bytes);
    else if (copy_in) std::memcpy(host.data(), t.ptr, bytes);
  }
  void back(const Tensor& t) const {
    if (t.device != Device::cpu) device_copy(t.ptr, host.data(), bytes);
    else std::memcpy(t.ptr, host.data(), bytes);
  }
  size_t bytes;
  std::vector<double> host;  // 8-byte aligned storage
  Tensor tensor;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &world_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string name() const override { return "mpi"; }

  void all_reduce_sum(Tensor t) override {
    if (t.device != Device::cpu) {
      Staged h(t);
      all_reduce_sum(h.tensor);
      return h.back(t);
    }
    const MPI_Datatype type = mpi_type(t, "all_reduce_sum");
    char* p = static_cast<char*>(t.ptr);
    const size_t elem = dtype_size(t.dtype);
    for (int64_t done = 0, n = t.numel(); done < n; done += kChunk) {
      const int count = static_cast<int>(std::min(kChunk, n - done));
      MPI_Allreduce(MPI_IN_PLACE, p + done * elem, count, type, MPI_SUM, comm_);
    }
  }

  void all_gather(const Tensor& send, Tensor recv) override {
    if (send.device != Device::cpu || recv.device != Device::cpu) {
      Staged hs(send), hr(recv, /*copy_in=*/false);
      all_gather(hs.tensor, hr.tensor);
      return hr.back(recv);
    }
    const MPI_Datatype type = mpi_type(send, "all_gather");
    check_sizes(send, recv, "all_gather");
    const int n = int_count(send.numel(), "all_gather");
    MPI_Allgather(send.ptr, n, type, recv.ptr, n, type, comm_);
  }

  void reduce_scatter_sum(const Tensor& send, Tensor recv) override {
    if (send.device != Device::cpu || recv.device != Device::cpu) {
      Staged hs(send), hr(recv, /*copy_in=*/false);
      reduce_scatter_sum(hs.tensor, hr.tensor);
      return hr.back(recv);
    }
    const MPI_Datatype type = mpi_type(send, "reduce_scatter_sum");
    check_sizes(recv, send, "reduce_scatter_sum");
    MPI_Reduce_scatter_block(send.ptr, recv.ptr, int_count(recv.numel(), "reduce_scatter_sum"), type, MPI_SUM, comm_);
  }

  void broadcast(Tensor t, int root) override {
    if (t.device != Device::cpu) {
      Staged h(t);
      broadcast(h.tensor, root);
      return h.back(t);
    }
    const MPI_Datatype type = mpi_type(t, "broadcast");
    char* p = static_cast<char*>(t.ptr);
    const size_t elem = dtype_size(t.dtype);
    for (int64_t done = 0, n = t.numel(); done < n; done += kChunk) {
      const int count = static_cast<int>(std::min(kChunk, n - done));
      MPI_Bcast(p + done * elem, count, type, root, comm_);
    }
  }

  void barrier() override { MPI_Barrier(comm_); }

  std::unique_ptr<Request> start_all_reduce_sum(Tensor t) override {
    if (t.device != Device::cpu) {
      all_reduce_sum(t);
      return completed_request();
    }
    const MPI_Datatype type = mpi_type(t, "start_all_reduce_sum");
    char* p = static_cast<char*>(t.ptr);
    const size_t elem = dtype_size(t.dtype);
    std::vector<MPI_Request> requests;
    for (int64_t done = 0, n = t.numel(); done < n; done += kChunk) {
      const int count = static_cast<int>(std::min(kChunk, n - done));
      requests.emplace_back();
      MPI_Iallreduce(MPI_IN_PLACE, p + done * elem, count, type, MPI_SUM, comm_, &requests.back());
    }
    return std::make_unique<MpiRequest>(std::move(requests));
  }

  std::unique_ptr<Request> start_reduce_scatter_sum(const Tensor& send, Tensor recv) override {
    if (send.device != Device::cpu || recv.device != Device::cpu) {
      reduce_scatter_sum(send, recv);
      return completed_request();
    }
    const MPI_Datatype type = mpi_type(send, "start_reduce_scatter_sum");
    check_sizes(recv, send, "start_reduce_scatter_sum");
    std::vector<MPI_Request> requests(1);
    MPI_Ireduce_scatter_block(send.ptr, recv.ptr, int_count(recv.numel(), "start_reduce_scatter_sum"), type, MPI_SUM,
                              comm_, &requests[0]);
    return std::make_unique<MpiRequest>(std::move(requests));
  }

  std::unique_ptr<Request> start_all_gather(const Tensor& send, Tensor recv) override {
    if (send.device != Device::cpu || recv.device != Device::cpu) {
      all_gather(send, recv);
      return completed_request();
    }
    const MPI_Datatype type = mpi_type(send, "start_all_gather");
    check_sizes(send, recv, "start_all_gather");
    const int n = int_count(send.numel(), "start_all_gather");
    std::vector<MPI_Request> requests(1);
    MPI_Iallgather(send.ptr, n, type, recv.ptr, n, type, comm_, &requests[0]);
    return std::make_unique<MpiRequest>(std::move(requests));
  }

 private:
  // `big` must hold world * numel(small) elements of the same dtype.
  void check_sizes(const Tensor& small, const Tensor& big, const char* op) const {
    if (small.dtype != big.dtype || big.numel() != small.numel() * world_)
      throw std::logic_error(std::string("mpi communicator: ") + op + ": buffers of " + std::to_string(small.numel()) +
                             " and " + std::to_string(big.numel()) + " elements do not fit a world of " +
                             std::to_string(world_));
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, world_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<MpiCommunicator>(); }

}  // namespace speedrun::dist

#else

namespace speedrun::dist {
std::unique_ptr<Communicator> make_mpi_communicator() {
  throw std::logic_error("this speedrun was built without MPI; multi-process training needs it");
}
}  // namespace speedrun::dist

#endif
