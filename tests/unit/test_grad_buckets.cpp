// The overlapped gradient reduction's pieces on one process (the multi-rank equivalence
// runs under mpirun: tests/python/test_mpi_overlap.py):
//   - assign_buckets: which parameters share a collective;
//   - GradBucketer: a collective starts exactly when its last parameter is reported, an
//     unreported one at its wait, each once per step, and its deliberate faults;
//   - the model's GradReadySink reports: every parameter once, and only once its gradient
//     is final (the gradient at the report equals the gradient after the backward).
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dist/grad_buckets.h"
#include "model/gpt.h"
#include "optim/reduction_overlap.h"
#include "test_support.h"

namespace speedrun::test {
namespace {

using Buckets = std::vector<std::vector<size_t>>;

TEST(GradBuckets, AssignmentExamples) {
  // Fills up to the cap, closing before a parameter that would pass it.
  EXPECT_EQ(dist::assign_buckets({4, 4, 4, 4}, 8), (Buckets{{0, 1}, {2, 3}}));
  EXPECT_EQ(dist::assign_buckets({3, 5, 8, 1}, 8), (Buckets{{0, 1}, {2}, {3}}));
  // A parameter larger than the cap is a bucket of its own, wherever it falls.
  EXPECT_EQ(dist::assign_buckets({2, 10, 2, 2}, 4), (Buckets{{0}, {1}, {2, 3}}));
  // A cap below every size: one bucket per parameter.
  EXPECT_EQ(dist::assign_buckets({4, 4, 4}, 1), (Buckets{{0}, {1}, {2}}));
  // 0: one bucket of everything (no overlap).
  EXPECT_EQ(dist::assign_buckets({4, 4, 4}, 0), (Buckets{{0, 1, 2}}));
  EXPECT_EQ(dist::assign_buckets({}, 8), Buckets{});
}

TEST(GradBuckets, BucketSizeInBytes) {
  EXPECT_EQ(optim::grad_bucket_bytes(0.0), 0u);                    // off
  EXPECT_EQ(optim::grad_bucket_bytes(25.0), size_t{25} << 20);      // MiB, as PyTorch DDP
  EXPECT_EQ(optim::grad_bucket_bytes(0.001), 1049u);                // rounded to the nearest byte
  EXPECT_EQ(optim::grad_bucket_bytes(1e-12), 1u);                   // positive never means off
}

TEST(GradBuckets, AssignmentCoversEveryParameterOnceWithinTheCap) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SPEEDRUN_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<size_t> bytes(rng() % 40);
    for (size_t& b : bytes) b = 1 + rng() % 1000;
    const size_t cap = rng() % 3000;
    const Buckets buckets = dist::assign_buckets(bytes, cap);
    size_t next = 0;
    for (const auto& b : buckets) {
      ASSERT_FALSE(b.empty());
      size_t sum = 0;
      for (size_t i : b) {
        ASSERT_EQ(i, next++);  // consecutive, in order, each once
        sum += bytes[i];
      }
      if (cap > 0 && b.size() > 1) EXPECT_LE(sum, cap);
      // Greedy: the next parameter would not have fit.
      if (cap > 0 && next < bytes.size()) EXPECT_GT(sum + bytes[next], cap);
    }
    EXPECT_EQ(next, bytes.size());
    if (cap == 0) EXPECT_LE(buckets.size(), 1u);
  }
}

// A request that records when it is waited on; starts are recorded by the test.
struct Log {
  std::vector<std::string> events;
};
class LoggedRequest final : public dist::Request {
 public:
  LoggedRequest(Log& log, std::string name) : log_(log), name_(std::move(name)) {}
  bool test() override { return false; }
  void wait() override { log_.events.push_back("wait " + name_); }

 private:
  Log& log_;
  std::string name_;
};

dist::GradBucketer::Start starter(Log& log, const std::string& name) {
  return [&log, name] {
    log.events.push_back("start " + name);
    return std::unique_ptr<dist::Request>(new LoggedRequest(log, name));
  };
}

TEST(GradBuckets, CollectivesStartWhenTheirLastGradientIsFinal) {
  Log log;
  dist::GradBucketer b(5);
  const size_t a = b.add({4, 3}, starter(log, "a"));
  const size_t c = b.add({2, 0}, starter(log, "c"));
  const size_t d = b.add({1}, starter(log, "d"));
  EXPECT_EQ(b.collectives(), 3u);
  for (int step = 0; step < 2; ++step) {  // the same every step
    log.events.clear();
    b.gradient_final(4);
    EXPECT_TRUE(log.events.empty());
    b.gradient_final(3);
    b.gradient_final(2);
    b.gradient_final(1);
    EXPECT_EQ(log.events, (std::vector<std::string>{"start a", "start d"}));
    EXPECT_THROW(b.gradient_final(2), std::logic_error);  // twice in one step
    // Parameter 0 never reported (a model that does not report it): c starts at its wait.
    b.wait(a);
    b.wait(d);
    b.wait(c);
    EXPECT_EQ(log.events, (std::vector<std::string>{"start a", "start d", "wait a", "wait d", "start c", "wait c"}));
    EXPECT_EQ(b.started_in_backward(), 2u);
  }
  EXPECT_THROW(b.gradient_final(5), std::logic_error);
  EXPECT_THROW(b.add({7}, starter(log, "x")), std::logic_error);
}

// A request that completes at its second poll.
class SlowRequest final : public dist::Request {
 public:
  bool test() override { return ++polls_ >= 2; }
  void wait() override {}

 private:
  int polls_ = 0;
};

TEST(GradBuckets, CountsCollectivesCompletedDuringTheBackward) {
  dist::GradBucketer b(4);
  auto slow = [] { return std::unique_ptr<dist::Request>(new SlowRequest); };
  const size_t a = b.add({0}, slow), c = b.add({1}, slow), d = b.add({3}, slow);
  for (int step = 0; step < 2; ++step) {
    b.gradient_final(0);  // a starts, first poll
    b.gradient_final(1);  // c starts; a's second poll: complete
    b.gradient_final(2);  // c's second poll: complete
    b.gradient_final(3);  // d starts, first poll only
    b.wait(a);
    b.wait(c);
    b.wait(d);
    EXPECT_EQ(b.started_in_backward(), 3u);
    EXPECT_EQ(b.completed_in_backward(), 2u);
  }
}

TEST(GradBuckets, NothingRegisteredIgnoresReports) {
  // Optimizers that register nothing (they reduce in step()): the reports of every step
  // are accepted, none counts twice.
  dist::GradBucketer b(2);
  for (int step = 0; step < 3; ++step) {
    b.gradient_final(0);
    b.gradient_final(1);
  }
  EXPECT_EQ(b.collectives(), 0u);
}

TEST(GradBuckets, DeliberateFaults) {
  {
    Log log;
    dist::GradBucketer b(3, dist::GradBucketer::Fault::early);
    b.add({0, 1}, starter(log, "a"));
    b.gradient_final(1);
    EXPECT_EQ(log.events, (std::vector<std::string>{"start a"}));  // before parameter 0 is final
  }
  {
    Log log;
    dist::GradBucketer b(3, dist::GradBucketer::Fault::skip);
    const size_t a = b.add({0}, starter(log, "a"));
    const size_t c = b.add({1}, starter(log, "c"));
    b.gradient_final(0);
    b.gradient_final(1);
    b.wait(a);
    b.wait(c);
    EXPECT_EQ(log.events, (std::vector<std::string>{"start c", "wait c"}));  // a never ran
  }
}

config::ModelConfig tiny_model() {
  config::ModelConfig m;
  m.vocab_size = 97;
  m.padded_vocab_size = 128;
  m.n_layer = 2;
  m.d_model = 32;
  m.n_head = 2;
  m.head_dim = 16;
  m.seq_len = 16;
  return m;
}

// Snapshots each reported parameter's gradient at the moment of the report, and also
// the embedding's gradient when the head is reported (first), for the negative control.
class Recorder final : public model::GradReadySink {
 public:
  explicit Recorder(model::Gpt& m) : model_(m) {}
  void gradient_final(size_t index) override {
    order.push_back(index);
    const Tensor g = model_.grad(index);
    at_report[index].assign(g.data<float>(), g.data<float>() + g.numel());
    if (order.size() == 1) {
      const Tensor e = model_.grad("embed.weight");
      embed_at_first.assign(e.data<float>(), e.data<float>() + e.numel());
    }
  }
  std::vector<size_t> order;
  std::map<size_t, std::vector<float>> at_report;
  std::vector<float> embed_at_first;

 private:
  model::Gpt& model_;
};

TEST(GradBuckets, ModelReportsEachGradientOnceWhenFinal) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SPEEDRUN_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  const config::ModelConfig cfg = tiny_model();
  const int64_t B = 2, N = B * cfg.seq_len;
  model::Gpt m(cfg, Device::cpu, B);
  // Random parameters everywhere (the spec's init zeroes the head and so every trunk gradient).
  std::uniform_real_distribution<float> small(-0.3f, 0.3f), near_one(0.8f, 1.2f);
  for (const auto& spec : m.layout().params()) {
    const bool gains = spec.name.find("gains") != std::string::npos;
    for (int64_t i = 0; i < spec.numel; ++i) m.params()[spec.offset + i] = gains ? near_one(rng) : small(rng);
  }
  m.weights_changed();
  std::vector<int32_t> tokens(2 * N), targets(2 * N);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % cfg.vocab_size);
  for (auto& t : targets) t = static_cast<int32_t>(rng() % cfg.vocab_size);

  // Two micro-batches, the report on the last only, as the trainer does.
  m.zero_grad();
  m.forward_backward(tokens.data(), targets.data(), B);
  Recorder rec(m);
  m.forward_backward(tokens.data() + N, targets.data() + N, B, nullptr, {}, &rec);

  const auto& specs = m.layout().params();
  ASSERT_EQ(rec.order.size(), specs.size());  // every parameter ...
  ASSERT_EQ(rec.at_report.size(), specs.size());  // ... once
  // The backward's order: the head first, the embedding last.
  EXPECT_EQ(specs[rec.order.front()].name, "proj.weight");
  EXPECT_EQ(specs[rec.order.back()].name, "embed.weight");
  for (const auto& [index, at_report] : rec.at_report) {
    const Tensor g = m.grad(index);
    const std::vector<float> final_grad(g.data<float>(), g.data<float>() + g.numel());
    EXPECT_EQ(at_report, final_grad) << specs[index].name << " was reported before its gradient was final";
    double norm = 0;
    for (float x : final_grad) norm += std::abs(x);
    EXPECT_GT(norm, 0.0) << specs[index].name;  // not vacuous: a real gradient
  }
  // Negative control: the same comparison notices a gradient that was still changing
  // (the embedding's, when the head was reported).
  const Tensor e = m.grad("embed.weight");
  EXPECT_NE(rec.embed_at_first, std::vector<float>(e.data<float>(), e.data<float>() + e.numel()));

  // Reporting changes nothing: the same two micro-batches without a sink give the same
  // gradients bitwise.
  std::vector<float> with(m.grads(), m.grads() + m.layout().total_numel());
  m.zero_grad();
  m.forward_backward(tokens.data(), targets.data(), B);
  m.forward_backward(tokens.data() + N, targets.data() + N, B);
  EXPECT_EQ(with, std::vector<float>(m.grads(), m.grads() + m.layout().total_numel()));
}

}  // namespace
}  // namespace speedrun::test
