// The CPU-checkable parts of the bf16 weight copies written by the optimizers and of the
// step's loss kept on the model (issue 14, deliverable 5): the environment choices, which
// parameters an optimizer reports as written, and the loss-sum interface on the CPU model
// (the same bits as summing forward_backward's results on the host, as the trainer did).
// The CUDA side: CudaOptimTest.UpdateKernelsWriteTheBf16WeightCopies and
// tests/unit/test_cuda_model_step.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "model/gpt.h"
#include "model/weight_copies.h"
#include "ops/ops.h"
#include "optim/device_path.h"
#include "optim/optimizer.h"
#include "test_support.h"

namespace speedrun::test {
namespace {

TEST(WeightCopyChoice, ParsesTheEnvironmentValues) {
  using model::WeightCopyWriter;
  EXPECT_EQ(model::parse_weight_copy_writer(std::nullopt), WeightCopyWriter::convert);
  EXPECT_EQ(model::parse_weight_copy_writer(""), WeightCopyWriter::convert);
  EXPECT_EQ(model::parse_weight_copy_writer("convert"), WeightCopyWriter::convert);
  EXPECT_EQ(model::parse_weight_copy_writer("optimizer"), WeightCopyWriter::optimizer);
  try {
    model::parse_weight_copy_writer("optimiser");
    ADD_FAILURE() << "a typo was accepted";
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "SPEEDRUN_WEIGHT_COPIES=optimiser: expected convert, optimizer or nothing (environment "
                           "variable)");
  }
  EXPECT_FALSE(model::parse_check_copies(std::nullopt));
  EXPECT_FALSE(model::parse_check_copies("0"));
  EXPECT_TRUE(model::parse_check_copies("1"));
  EXPECT_THROW(model::parse_check_copies("yes"), UserError);
}

config::ModelConfig tiny_config() {
  config::ModelConfig m;
  m.vocab_size = 300;
  m.padded_vocab_size = 320;
  m.n_layer = 2;
  m.d_model = 64;
  m.n_head = 2;
  m.head_dim = 32;
  m.seq_len = 24;
  return m;
}

void randomize(model::Gpt& g, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> small(-0.2f, 0.2f), near_one(0.8f, 1.2f);
  for (const auto& spec : g.layout().params()) {
    const bool gains = spec.name.find("gains") != std::string::npos;
    for (int64_t i = 0; i < spec.numel; ++i) g.params()[spec.offset + i] = gains ? near_one(rng) : small(rng);
  }
  g.weights_changed();
}

// The trainer now sums a step's loss through begin_loss_sum / forward_backward_summed /
// end_loss_sum; on the CPU that must be bitwise what it did before (the sum of each
// micro-batch's forward_backward, in order, from 0.0), gradients included.
TEST(GptLossSum, OnTheCpuEqualsTheHostSumOfMicroBatchesBitwise) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SPEEDRUN_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  const config::ModelConfig m = tiny_config();
  const int64_t B = 2, N = B * m.seq_len, micro = 3;
  model::Gpt a(m, Device::cpu, B), b(m, Device::cpu, B);
  std::mt19937_64 rng_b = rng;
  randomize(a, rng);
  randomize(b, rng_b);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(m.vocab_size - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(micro * N)), targets(tokens.size());
  for (int32_t& t : tokens) t = id(rng);
  for (int32_t& t : targets) t = id(rng);
  a.zero_grad();
  b.zero_grad();
  double host_sum = 0.0;
  for (int64_t k = 0; k < micro; ++k) host_sum += a.forward_backward(tokens.data() + k * N, targets.data() + k * N, B);
  b.begin_loss_sum();
  for (int64_t k = 0; k < micro; ++k) b.forward_backward_summed(tokens.data() + k * N, targets.data() + k * N, B);
  const double summed = b.end_loss_sum();
  ASSERT_GT(host_sum, 0.0);
  EXPECT_EQ(std::memcmp(&summed, &host_sum, sizeof(double)), 0) << summed << " vs " << host_sum;
  EXPECT_EQ(std::memcmp(a.grads(), b.grads(), b.parameter_bytes()), 0);
  // Each step starts from zero; an empty step is zero.
  b.begin_loss_sum();
  EXPECT_EQ(b.end_loss_sum(), 0.0);
  b.begin_loss_sum();
  b.forward_backward_summed(tokens.data(), targets.data(), B);
  const double first = a.forward_loss(tokens.data(), targets.data(), B);
  const double again = b.end_loss_sum();
  EXPECT_EQ(std::memcmp(&again, &first, sizeof(double)), 0) << again << " vs " << first;
}

// ops::add_sum_of_losses on the CPU: sum_losses's sum (row order, double) added to, or
// written over, the total; a total that is not one f64 is refused by name.
TEST(GptLossSum, AddSumOfLossesOnTheCpu) {
  std::mt19937_64 rng(test_seed());
  std::uniform_real_distribution<float> u(0.5f, 12.0f);
  std::vector<float> losses(37);
  for (float& x : losses) x = u(rng);
  const Tensor l = Tensor::of(losses.data(), {37});
  const double sum = ops::sum_losses(l);
  double total = static_cast<double>(u(rng));
  const double start = total;
  ops::add_sum_of_losses(Tensor::of(&total, {1}), l, /*overwrite=*/false);
  EXPECT_EQ(total, start + sum);
  ops::add_sum_of_losses(Tensor::of(&total, {1}), l, /*overwrite=*/true);
  EXPECT_EQ(total, sum);
  EXPECT_EQ(ops::read_scalar_f64(Tensor::of(&total, {1})), sum);
  float wrong = 0.0f;
  try {
    ops::add_sum_of_losses(Tensor::of(&wrong, {1}), l, false);
    ADD_FAILURE() << "an f32 total was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("total"), std::string::npos) << e.what();
  }
}

// A CPU model never lends a copy (it has none), whatever SPEEDRUN_WEIGHT_COPIES says, and a
// CPU optimizer never reports one written.
TEST(WeightCopyChoice, TheCpuPathLendsAndWritesNone) {
  const model::WeightCopyWriter previous = model::set_weight_copy_writer(model::WeightCopyWriter::optimizer);
  const config::ModelConfig m = tiny_config();
  model::Gpt g(m, Device::cpu, 1);
  model::set_weight_copy_writer(previous);
  for (size_t i = 0; i < g.layout().params().size(); ++i) EXPECT_TRUE(g.weight_copy(i).empty()) << i;
  EXPECT_THROW(g.weight_copy(g.layout().params().size()), std::out_of_range);

  std::vector<float> p(12, 0.5f), grad(12, 0.25f);
  std::vector<uint16_t> copy(12, 0);
  optim::ParamRef ref{"w", Tensor::of(p.data(), {3, 4}), Tensor::of(grad.data(), {3, 4}), 0,
                      Tensor(copy.data(), DType::bf16, Device::cpu, {3, 4})};
  config::OptimizerConfig e;
  e.type = "adamw";
  e.params = {"*"};
  e.lr = 0.1;
  e.settings = config::AdamWSettings{};
  const auto comm = dist::make_local_communicator();
  auto opt = optim::make_optimizer(e, {ref}, {comm.get()});
  EXPECT_TRUE(opt->weight_copies_written().empty());
  opt->step(0, 1.0);
  EXPECT_NE(p[0], 0.5f);                                                 // the step ran
  EXPECT_EQ(copy, std::vector<uint16_t>(12, 0));                         // and wrote no copy
}

// Which layout indices a device optimizer reports: only those all of whose parts (a stack's
// matrices share one index) have a copy and are updated by this rank's kernels.
TEST(WeightCopyChoice, CopiesWrittenNeedsEveryPartWrittenHere) {
  std::vector<float> buf(64, 0.0f);
  std::vector<uint16_t> bf(64, 0);
  auto ref = [&](size_t index, int64_t offset, bool with_copy) {
    optim::ParamRef r{"p" + std::to_string(index), Tensor::of(buf.data() + offset, {2, 4}),
                      Tensor::of(buf.data() + offset, {2, 4}), index};
    if (with_copy) r.copy = Tensor(bf.data() + offset, DType::bf16, Device::cpu, {2, 4});
    return r;
  };
  // index 0: one part, copy; 1: two parts, both copies; 2: two parts, one without a copy;
  // 3: one part, not updated here; 4: no copy.
  const std::vector<optim::ParamRef> refs = {ref(0, 0, true),   ref(1, 8, true),  ref(1, 16, true), ref(2, 24, true),
                                             ref(2, 32, false), ref(3, 40, true), ref(4, 48, false)};
  const auto here = [](size_t k) { return k != 5; };
  EXPECT_EQ(optim::copies_written(refs, here), (std::vector<size_t>{0, 1}));
  EXPECT_EQ(optim::copies_written(refs, [](size_t) { return false; }), std::vector<size_t>{});
  // A copy of another shape or dtype is a model bug, refused by name.
  optim::ParamRef bad = ref(7, 0, true);
  bad.copy = Tensor(bf.data(), DType::bf16, Device::cpu, {4, 2});
  EXPECT_THROW(optim::copy_pointer(bad), std::logic_error);
  bad.copy = Tensor(buf.data(), DType::f32, Device::cpu, {2, 4});
  EXPECT_THROW(optim::copy_pointer(bad), std::logic_error);
  EXPECT_EQ(optim::copy_pointer(ref(0, 0, false)), nullptr);
  EXPECT_EQ(optim::copy_pointer(ref(0, 8, true)), static_cast<void*>(bf.data() + 8));
}

}  // namespace
}  // namespace speedrun::test
