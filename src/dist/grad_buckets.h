// Overlapped gradient reduction: collectives that start during the backward pass of a
// step's last micro-batch, as soon as the gradients they read are final, instead of
// after the whole backward (PyTorch DDP's gradient buckets; modded-nanogpt's
// reduce-scatter hooks). See docs/distributed.md.
//
//   model backward --gradient_final(i)--> GradBucketer --start()--> Communicator::start_*
//   optimizer step() --wait(id)--> GradBucketer --Request::wait()
//
// The optimizers decide WHAT each collective is (they own the sharding: AdamW's ZeRO-1
// buckets, the matrix optimizers' rounds) and register it here with the parameters it
// reads; the bucketer only decides WHEN it starts. All ranks run the same backward, so
// they report the same parameters in the same order and start the same collectives in
// the same order, as MPI and NCCL require.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "dist/communicator.h"
#include "model/grad_ready_sink.h"

namespace speedrun::dist {

// Splits parameters into buckets of at most `bucket_bytes` each, in the given order:
// `bytes[i]` is the gradient size of the i-th parameter in the order the backward
// finishes them. Returns the positions (into `bytes`) of each bucket, consecutive and
// covering every position once. A bucket closes before a parameter that would take it
// past bucket_bytes; a parameter larger than bucket_bytes is a bucket of its own.
// bucket_bytes 0 gives one bucket of everything.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<size_t>& bytes, size_t bucket_bytes);

class GradBucketer final : public model::GradReadySink {
 public:
  using Start = std::function<std::unique_ptr<Request>()>;

  // Deliberate mistakes, for the tests' negative controls only (SPEEDRUN_TEST_BUCKET_FAULT,
  // dist/fault_injection.h): `early` starts a collective at its FIRST parameter's report
  // (reading gradients the backward has not finished); `skip` never starts collective 0
  // (its wait returns at once, the optimizer reads a stale buffer).
  enum class Fault { none, early, skip };

  // `n_params`: the model's parameter count (the indices gradient_final receives).
  explicit GradBucketer(size_t n_params, Fault fault = Fault::none);

  // Registers a collective: `start` packs what it sends and starts it; it runs once per
  // step, when every parameter in `params` has been reported final, in the order those
  // reports complete the collectives. Returns its id for wait(). Register before the
  // first step; every registered collective must be waited on once per step.
  size_t add(std::vector<size_t> params, Start start);

  // Counts parameter `index` final; starts every collective it completes, and lets the
  // outstanding ones progress. Throws std::logic_error when reported twice in one step.
  void gradient_final(size_t index) override;

  // Returns once collective `id` of this step has completed (Request::wait). One whose
  // parameters were not all reported (a model that does not report) starts here. When
  // every collective of the step has been waited on, the next step begins.
  void wait(size_t id);

  size_t collectives() const { return collectives_.size(); }
  // How many of the last step's collectives started before the first wait() of that step:
  // during the backward (the overlap the step got).
  size_t started_in_backward() const { return started_in_backward_; }
  // How many of them had also completed before that wait (seen by the polls at each
  // report): communication that ran while the backward computed.
  size_t completed_in_backward() const { return completed_in_backward_; }

 private:
  struct Collective {
    std::vector<size_t> params;
    Start start;
    size_t pending = 0;                 // parameters not yet reported this step
    std::unique_ptr<Request> request;   // set once started this step
    bool waited = false;
  };
  void launch(Collective& c);
  void next_step();

  std::vector<std::vector<size_t>> users_;  // per parameter: the collectives reading it
  std::vector<bool> reported_;
  std::vector<Collective> collectives_;
  size_t waited_ = 0, started_ = 0, started_in_backward_ = 0;
  size_t completed_ = 0, completed_in_backward_ = 0;  // seen complete by the polls
  bool waiting_ = false;  // a wait() happened in this step: the backward is over
  std::vector<size_t> outstanding_;  // started, not yet seen complete
  Fault fault_;
};

}  // namespace speedrun::dist
