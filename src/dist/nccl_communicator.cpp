// The NCCL communicator: collectives on device buffers with NCCL, one GPU per local
// rank; host buffers (loss sums, config hashes) go through the MPI communicator it
// wraps. Compiled when CUDA, NCCL and MPI are all found. It has never run: the
// machines this project was built on had no GPU (see docs/design.md).
#include <stdexcept>
#include <string>
#include <vector>

#include "build_info.h"
#include "dist/communicator.h"

#if SPEEDRUN_HAVE_CUDA && SPEEDRUN_HAVE_NCCL && SPEEDRUN_HAVE_MPI
#include <cuda_runtime.h>
#include <nccl.h>

namespace speedrun::dist {

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("nccl communicator: ") + what + ": " + cudaGetErrorString(e));
}

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("nccl communicator: ") + what + ": " + ncclGetErrorString(r));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> host, int local_rank) : host_(std::move(host)) {
    check_cuda(cudaSetDevice(local_rank), ("cudaSetDevice(" + std::to_string(local_rank) + ")").c_str());
    ncclUniqueId id{};
    if (host_->rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    // The host communicator moves f32/f64 only: each byte of the id travels as an
    // exactly representable double.
    std::vector<double> bytes(sizeof id.internal);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(id.internal[i]);
    host_->broadcast(Tensor::of(bytes.data(), {static_cast<int64_t>(bytes.size())}), 0);
    for (size_t i = 0; i < bytes.size(); ++i) id.internal[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]));
    check_nccl(ncclCommInitRank(&comm_, host_->world(), id, host_->rank()), "ncclCommInitRank");
  }
  ~NcclCommunicator() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }

  int rank() const override { return host_->rank(); }
  int world() const override { return host_->world(); }
  std::string name() const override { return "nccl"; }

  // Collectives run on the legacy default stream, ordered with the model's kernels;
  // the synchronize makes the result visible to host code that follows. (Overlap with
  // the backward pass needs a side stream and events: not built yet.)
  void all_reduce_sum(Tensor t) override {
    if (t.device == Device::cpu) return host_->all_reduce_sum(t);
    check_nccl(ncclAllReduce(t.ptr, t.ptr, static_cast<size_t>(t.numel()), nccl_type(t), ncclSum, comm_, nullptr),
               "ncclAllReduce");
    sync();
  }

  void all_gather(const Tensor& send, Tensor recv) override {
    if (send.device == Device::cpu) return host_->all_gather(send, recv);
    check_nccl(ncclAllGather(send.ptr, recv.ptr, static_cast<size_t>(send.numel()), nccl_type(send), comm_, nullptr),
               "ncclAllGather");
    sync();
  }

  void reduce_scatter_sum(const Tensor& send, Tensor recv) override {
    if (send.device == Device::cpu) return host_->reduce_scatter_sum(send, recv);
    check_nccl(ncclReduceScatter(send.ptr, recv.ptr, static_cast<size_t>(recv.numel()), nccl_type(send), ncclSum,
                                 comm_, nullptr),
               "ncclReduceScatter");
    sync();
  }

  void broadcast(Tensor t, int root) override {
    if (t.device == Device::cpu) return host_->broadcast(t, root);
    check_nccl(ncclBroadcast(t.ptr, t.ptr, static_cast<size_t>(t.numel()), nccl_type(t), root, comm_, nullptr),
               "ncclBroadcast");
    sync();
  }

  void barrier() override { host_->barrier(); }

 private:
  static ncclDataType_t nccl_type(const Tensor& t) {
    switch (t.dtype) {
      case DType::f32: return ncclFloat32;
      case DType::f64: return ncclFloat64;
      case DType::bf16: return ncclBfloat16;
      default: throw std::logic_error(std::string("nccl communicator: unsupported dtype ") + dtype_name(t.dtype));
    }
  }
  static void sync() { check_cuda(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize"); }

  std::unique_ptr<Communicator> host_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host, int local_rank) {
  return std::make_unique<NcclCommunicator>(std::move(host), local_rank);
}

}  // namespace speedrun::dist

#else

namespace speedrun::dist {
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator>, int) {
  throw std::logic_error("this speedrun was built without NCCL (needs CUDA, NCCL and MPI)");
}
}  // namespace speedrun::dist

#endif
