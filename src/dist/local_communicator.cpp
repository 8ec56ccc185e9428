#include <cstring>
#include <stdexcept>

#include "dist/communicator.h"

namespace speedrun::dist {

namespace {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }
  std::string name() const override { return "local"; }
  void all_reduce_sum(Tensor) override {}
  void all_gather(const Tensor& send, Tensor recv) override { copy(send, recv); }
  void reduce_scatter_sum(const Tensor& send, Tensor recv) override { copy(send, recv); }
  void broadcast(Tensor, int) override {}
  void barrier() override {}

 private:
  static void copy(const Tensor& src, Tensor dst) {
    if (src.bytes() != dst.bytes()) throw std::logic_error("communicator: size mismatch");
    if (src.ptr != dst.ptr) std::memmove(dst.ptr, src.ptr, src.bytes());
  }
};

class CompletedRequest final : public Request {
 public:
  bool test() override { return true; }
  void wait() override {}
};

}  // namespace

std::unique_ptr<Request> completed_request() { return std::make_unique<CompletedRequest>(); }

std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

}  // namespace speedrun::dist
