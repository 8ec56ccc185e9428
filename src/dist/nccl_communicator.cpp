// The NCCL communicator: collectives on device buffers with NCCL, one GPU per local
// rank; host buffers (loss sums, config hashes) go through the MPI communicator it
// wraps. Compiled when CUDA, NCCL and MPI are all found. It has never run: the
// machines this project was built on had no GPU (see docs/design.md).
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "build_info.h"
#include "dist/communicator.h"

#if SPEEDRUN_HAVE_CUDA && SPEEDRUN_HAVE_NCCL && SPEEDRUN_HAVE_MPI
#include <cuda_runtime.h>
#include <nccl.h>

#include "kernels/runtime/context.cuh"

namespace speedrun::dist {

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("nccl communicator: ") + what + ": " + cudaGetErrorString(e));
}

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("nccl communicator: ") + what + ": " + ncclGetErrorString(r));
}

// A collective enqueued on the communication stream: `done` is recorded after it.
class NcclRequest final : public Request {
 public:
  explicit NcclRequest(cudaEvent_t done) : done_(done) {}
  ~NcclRequest() override { cudaEventDestroy(done_); }  // released once the event completes
  bool test() override { return cudaEventQuery(done_) == cudaSuccess; }
  // The compute stream waits for the collective; the host goes on.
  void wait() override { check_cuda(cudaStreamWaitEvent(cuda::stream(), done_, 0), "cudaStreamWaitEvent"); }

 private:
  cudaEvent_t done_;
};

// Seconds a blocking collective may take before the communicator is aborted
// (SPEEDRUN_NCCL_TIMEOUT_S, default 300): a rank that died leaves the others spinning in
// NCCL kernels, which only ncclCommAbort ends.
double collective_timeout_s() {
  const char* text = std::getenv("SPEEDRUN_NCCL_TIMEOUT_S");
  if (text == nullptr || *text == '\0') return 300.0;
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(v > 0.0))
    throw std::runtime_error(std::string("SPEEDRUN_NCCL_TIMEOUT_S='") + text + "' is not a positive number of seconds");
  return v;
}

// GPU `local_rank` of the node. More ranks than GPUs on a node is an error naming both,
// unless NCCL_MULTI_RANK_GPU_ENABLE=1 asks NCCL (2.30 and later) to let ranks share GPUs:
// then rank i takes GPU i mod count.
int device_for(int local_rank) {
  int count = 0;
  check_cuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (local_rank < count) return local_rank;
  const char* share = std::getenv("NCCL_MULTI_RANK_GPU_ENABLE");
  if (share != nullptr && std::string(share) == "1" && count > 0) return local_rank % count;
  throw std::runtime_error("nccl communicator: local rank " + std::to_string(local_rank) + " but this node has " +
                           std::to_string(count) + " GPU(s): start at most one rank per GPU (or, sharing GPUs, "
                           "SPEEDRUN_COMMUNICATOR=mpi, or NCCL_MULTI_RANK_GPU_ENABLE=1 with NCCL >= 2.30)");
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> host, int local_rank)
      : host_(std::move(host)), timeout_s_(collective_timeout_s()) {
    check_cuda(cudaSetDevice(device_for(local_rank)), ("cudaSetDevice for local rank " + std::to_string(local_rank)).c_str());
    ncclUniqueId id{};
    if (host_->rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    // The host communicator moves f32/f64 only: each byte of the id travels as an
    // exactly representable double.
    std::vector<double> bytes(sizeof id.internal);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(id.internal[i]);
    host_->broadcast(Tensor::of(bytes.data(), {static_cast<int64_t>(bytes.size())}), 0);
    for (size_t i = 0; i < bytes.size(); ++i) id.internal[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]));
    check_nccl(ncclCommInitRank(&comm_, host_->world(), id, host_->rank()), "ncclCommInitRank");
    check_cuda(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~NcclCommunicator() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
    if (comm_stream_ != nullptr) cudaStreamDestroy(comm_stream_);
  }

  int rank() const override { return host_->rank(); }
  int world() const override { return host_->world(); }
  std::string name() const override { return "nccl"; }

  // Every NCCL collective runs on the communication stream, after the work already issued
  // on the compute stream (cuda::stream()), so that consecutive collectives of this
  // communicator never run concurrently in different orders on different ranks. The
  // blocking forms then wait for it on the host (through finish(): abort on error or
  // timeout); the start_ forms return a request whose wait() orders the compute stream
  // after it.
  void all_reduce_sum(Tensor t) override {
    if (t.device == Device::cpu) return host_->all_reduce_sum(t);
    finish(start_all_reduce_sum(t));
  }

  void all_gather(const Tensor& send, Tensor recv) override {
    if (send.device == Device::cpu) return host_->all_gather(send, recv);
    finish(start_all_gather(send, recv));
  }

  void reduce_scatter_sum(const Tensor& send, Tensor recv) override {
    if (send.device == Device::cpu) return host_->reduce_scatter_sum(send, recv);
    finish(start_reduce_scatter_sum(send, recv));
  }

  void broadcast(Tensor t, int root) override {
    if (t.device == Device::cpu) return host_->broadcast(t, root);
    begin();
    check_nccl(ncclBroadcast(t.ptr, t.ptr, static_cast<size_t>(t.numel()), nccl_type(t), root, comm_, comm_stream_),
               "ncclBroadcast");
    finish(end());
  }

  void barrier() override { host_->barrier(); }

  std::unique_ptr<Request> start_all_reduce_sum(Tensor t) override {
    if (t.device == Device::cpu) return host_->start_all_reduce_sum(t);
    begin();
    check_nccl(ncclAllReduce(t.ptr, t.ptr, static_cast<size_t>(t.numel()), nccl_type(t), ncclSum, comm_, comm_stream_),
               "ncclAllReduce");
    return end();
  }

  std::unique_ptr<Request> start_reduce_scatter_sum(const Tensor& send, Tensor recv) override {
    if (send.device == Device::cpu) return host_->start_reduce_scatter_sum(send, recv);
    begin();
    check_nccl(ncclReduceScatter(send.ptr, recv.ptr, static_cast<size_t>(recv.numel()), nccl_type(send), ncclSum,
                                 comm_, comm_stream_),
               "ncclReduceScatter");
    return end();
  }

  std::unique_ptr<Request> start_all_gather(const Tensor& send, Tensor recv) override {
    if (send.device == Device::cpu) return host_->start_all_gather(send, recv);
    begin();
    check_nccl(ncclAllGather(send.ptr, recv.ptr, static_cast<size_t>(send.numel()), nccl_type(send), comm_, comm_stream_),
               "ncclAllGather");
    return end();
  }

 private:
  static ncclDataType_t nccl_type(const Tensor& t) {
    switch (t.dtype) {
      case DType::f32: return ncclFloat32;
      case DType::f64: return ncclFloat64;
      case DType::bf16: return ncclBfloat16;
      default: throw std::logic_error(std::string("nccl communicator: unsupported dtype ") + dtype_name(t.dtype));
    }
  }
  static cudaEvent_t new_event() {
    cudaEvent_t e = nullptr;
    check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    return e;
  }
  // The communication stream waits for everything issued so far on the compute stream
  // (the gradients the collective reads were written there).
  void begin() {
    cudaEvent_t ready = new_event();
    check_cuda(cudaEventRecord(ready, cuda::stream()), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(comm_stream_, ready, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);
  }
  std::unique_ptr<Request> end() {
    cudaEvent_t done = new_event();
    check_cuda(cudaEventRecord(done, comm_stream_), "cudaEventRecord");
    return std::make_unique<NcclRequest>(done);
  }
  // The watchdog of a blocking collective: polls its completion and NCCL's asynchronous
  // error; on an error or after timeout_s_ it aborts the communicator (ncclCommAbort ends
  // the kernels stuck waiting for a dead peer) and throws, so that the session ends the
  // job with a non-zero exit instead of hanging.
  void finish(std::unique_ptr<Request> request) {
    const auto t0 = std::chrono::steady_clock::now();
    while (!request->test()) {
      ncclResult_t async = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (async != ncclSuccess || waited > timeout_s_) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        throw std::runtime_error(async != ncclSuccess
                                     ? std::string("nccl communicator: collective failed: ") + ncclGetErrorString(async)
                                     : "nccl communicator: a collective did not finish within " +
                                           std::to_string(timeout_s_) +
                                           " s (SPEEDRUN_NCCL_TIMEOUT_S): a rank has died or hangs; aborted");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    request->wait();
  }

  std::unique_ptr<Communicator> host_;
  double timeout_s_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t comm_stream_ = nullptr;
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
