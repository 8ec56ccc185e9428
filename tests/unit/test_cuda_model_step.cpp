// A CUDA training step's model side without a separate weight conversion and without a host
// synchronization inside a micro-batch (issue 14, deliverable 5): the bf16 copies written by
// the optimizers' update kernels (SPEEDRUN_WEIGHT_COPIES=optimizer, model/weight_copies.h),
// the loss summed on the device (Model::begin_loss_sum), the token ids uploaded through
// pinned staging (HostUploader), and a stream capture proving the micro-batch issues no
// synchronization. Compiled only in CUDA builds; without a device every test reports
// "skipped: no CUDA device". None of these has run on a GPU yet.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/cuda_info.h"
#include "core/device_memory.h"
#include "dist/communicator.h"
#include "kernels/runtime/stream_capture.h"
#include "model/gpt.h"
#include "model/weight_copies.h"
#include "optim/capture_fan_out.h"
#include "optim/optimizer.h"
#include "cuda_model_test_config.h"
#include "test_support.h"

namespace speedrun::test {
namespace {

config::ModelConfig tiny_config() { return cuda_test_model_config(); }

// Random parameters, written to the device model (the spec's init zeroes the head).
void randomize(model::Gpt& gpu, std::mt19937_64& rng) {
  std::vector<float> host(static_cast<size_t>(gpu.layout().total_numel()));
  fill_random_parameters(gpu.layout(), host.data(), rng);
  device_copy(gpu.params(), host.data(), host.size() * sizeof(float));
  gpu.weights_changed();
}

config::OptimizerConfig adamw_entry(std::vector<std::string> params, double lr) {
  config::OptimizerConfig e;
  e.type = "adamw";
  e.params = std::move(params);
  e.lr = lr;
  e.settings = config::AdamWSettings{};
  return e;
}

// Every optimizer type over the matrices, AdamW over the rest (gpu-mini-*.json's split).
std::vector<config::OptimizerConfig> optimizers_for(const std::string& matrix_type) {
  std::vector<config::OptimizerConfig> entries = {adamw_entry({"embed.weight"}, 0.05),
                                                  adamw_entry({"proj.weight"}, 0.01),
                                                  adamw_entry({"*.bias", "*.gains"}, 0.02)};
  config::OptimizerConfig m;
  m.params = {"blocks.*.weight"};
  m.lr = 0.02;
  m.weight_decay = 0.01;
  if (!m.select_settings(matrix_type)) throw std::logic_error("no optimizer " + matrix_type);
  m.type = matrix_type;
  entries.push_back(m);
  if (matrix_type == "adamw") entries = {adamw_entry({"*"}, 0.01)};
  return entries;
}

struct Ids {
  std::vector<int32_t> tokens, targets;
};
Ids random_ids(const config::ModelConfig& m, int64_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(m.vocab_size - 1));
  Ids ids{std::vector<int32_t>(static_cast<size_t>(n)), std::vector<int32_t>(static_cast<size_t>(n))};
  for (int32_t& t : ids.tokens) t = id(rng);
  for (int32_t& t : ids.targets) t = id(rng);
  return ids;
}

// Restores the process-wide weight-copy choices on every path out.
struct CopyChoice {
  model::WeightCopyWriter writer;
  bool check;
  CopyChoice(model::WeightCopyWriter w, bool c)
      : writer(model::set_weight_copy_writer(w)), check(model::set_check_weight_copies(c)) {}
  ~CopyChoice() {
    model::set_weight_copy_writer(writer);
    model::set_check_weight_copies(check);
  }
};

// Training steps with the copies written by the optimizers, SPEEDRUN_CHECK_COPIES on: the
// model compares every written copy with its master's conversion, bitwise, at each
// forward (it throws on a difference). Against a twin that converts its copies (the old
// path) from the same start: the step losses agree to 1e-5 relative (same bits expected
// where the kernels are deterministic; the tolerance leaves room for atomics' order in
// the backward). Negative control: a copy corrupted after a step is caught, naming it.
TEST(CudaModel, OptimizerWrittenCopiesMatchTheConvertedOnes) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SPEEDRUN_TEST_SEED replays it)");
  const config::ModelConfig base = tiny_config();
  const int64_t B = 2, N = B * base.seq_len;
  for (const std::string type : {"adamw", "muon", "rmnp", "newton_muon"}) {
    for (const std::string embedding : {"f32", "bf16"}) {
      SCOPED_TRACE(type + ", embedding " + embedding);
      config::ModelConfig m = base;
      m.embedding_dtype = embedding;
      std::mt19937_64 rng(seed);
      std::unique_ptr<model::Gpt> old_path, new_path;
      {
        CopyChoice choice(model::WeightCopyWriter::convert, false);
        old_path = std::make_unique<model::Gpt>(m, Device::cuda, B, DType::bf16);
      }
      CopyChoice choice(model::WeightCopyWriter::optimizer, true);
      new_path = std::make_unique<model::Gpt>(m, Device::cuda, B, DType::bf16);
      std::mt19937_64 rng2 = rng;
      randomize(*old_path, rng);
      randomize(*new_path, rng2);
      const auto comm = dist::make_local_communicator();
      auto old_opts = optim::build_optimizers(optimizers_for(type), *old_path, {comm.get()});
      auto new_opts = optim::build_optimizers(optimizers_for(type), *new_path, {comm.get()});
      EXPECT_TRUE(optim::weight_copies_written(old_opts).empty());
      const std::vector<size_t> written = optim::weight_copies_written(new_opts);
      // Every parameter with a copy: each matrix weight, and the embedding when bf16.
      size_t with_copy = 0;
      for (size_t i = 0; i < new_path->layout().params().size(); ++i) {
        EXPECT_TRUE(old_path->weight_copy(i).empty());
        with_copy += new_path->weight_copy(i).empty() ? 0 : 1;
      }
      EXPECT_EQ(written.size(), with_copy);
      EXPECT_GT(with_copy, 0u);

      for (int step = 0; step < 3; ++step) {
        const Ids ids = random_ids(m, 2 * N, rng);
        double loss[2];
        for (int side = 0; side < 2; ++side) {
          model::Gpt& g = side == 0 ? *old_path : *new_path;
          auto& opts = side == 0 ? old_opts : new_opts;
          g.zero_grad();
          g.begin_loss_sum();
          optim::CaptureFanOut capture(opts, step);  // Newton-Muon's statistics, as the trainer feeds them
          for (int64_t k = 0; k < 2; ++k)
            g.forward_backward_summed(ids.tokens.data() + k * N, ids.targets.data() + k * N, B, capture.sink());
          loss[side] = g.end_loss_sum();  // the new path's forward checked its copies first
          for (auto& opt : opts) opt->step(step, 1.0);
          g.weights_updated(optim::weight_copies_written(opts));
        }
        ASSERT_TRUE(std::isfinite(loss[0]));
        EXPECT_NEAR(loss[1], loss[0], 1e-5 * std::fabs(loss[0])) << "step " << step;
      }
      // The negative control: one element of one written copy changed.
      const Tensor victim = new_path->weight_copy(written.back());
      uint16_t bits = 0;
      device_copy(&bits, victim.ptr, 2);
      bits ^= 0x0100;
      device_copy(victim.ptr, &bits, 2);
      const Ids ids = random_ids(m, N, rng);
      try {
        new_path->forward_loss(ids.tokens.data(), ids.targets.data(), B);
        ADD_FAILURE() << "a corrupted copy was not detected";
      } catch (const std::logic_error& e) {
        EXPECT_NE(std::string(e.what()).find(new_path->layout().params()[written.back()].name), std::string::npos)
            << e.what();
      }
    }
  }
}

// The step's loss summed on the device equals the micro-batches' host sums (the kernel adds
// in double in another order: 1e-12 relative), over more micro-batches than the uploader
// has staging slots (4), each with fresh ids: a slot overwritten before its copy ran would
// feed another micro-batch's ids and change the loss by far more.
TEST(CudaModel, LossSummedOnTheDeviceMatchesTheHostSums) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SPEEDRUN_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  const config::ModelConfig m = tiny_config();
  const int64_t B = 2, N = B * m.seq_len, micro = 7;
  model::Gpt a(m, Device::cuda, B, DType::bf16), b(m, Device::cuda, B, DType::bf16);
  std::mt19937_64 rng_b = rng;
  randomize(a, rng);
  randomize(b, rng_b);
  const Ids ids = random_ids(m, micro * N, rng);
  double host_sum = 0.0;
  for (int64_t k = 0; k < micro; ++k)
    host_sum += a.forward_backward(ids.tokens.data() + k * N, ids.targets.data() + k * N, B);
  b.begin_loss_sum();
  for (int64_t k = 0; k < micro; ++k) b.forward_backward_summed(ids.tokens.data() + k * N, ids.targets.data() + k * N, B);
  const double device_sum = b.end_loss_sum();
  ASSERT_GT(host_sum, 0.0);
  EXPECT_NEAR(device_sum, host_sum, 1e-12 * host_sum);
  // A new step starts from zero; an empty step sums to zero.
  b.begin_loss_sum();
  EXPECT_EQ(b.end_loss_sum(), 0.0);
  b.begin_loss_sum();
  b.forward_backward_summed(ids.tokens.data(), ids.targets.data(), B);
  EXPECT_NEAR(b.end_loss_sum(), a.forward_loss(ids.tokens.data(), ids.targets.data(), B), 1e-6 * host_sum);
}

// A training micro-batch (ids upload, forward, loss into the device sum, backward) runs under
// a stream capture: it issues no host synchronization, and could be a CUDA graph (the node
// count is printed for the record). Negative control: forward_backward, which reads the
// loss back (a synchronizing copy), fails the same capture.
TEST(CudaModel, MicroBatchHasNoHostSynchronization) {
  SKIP_WITHOUT_CUDA();
  std::mt19937_64 rng(test_seed());
  const config::ModelConfig m = tiny_config();
  const int64_t B = 2, N = B * m.seq_len;
  for (const auto writer : {model::WeightCopyWriter::convert, model::WeightCopyWriter::optimizer}) {
    CopyChoice choice(writer, false);
    model::Gpt g(m, Device::cuda, B, DType::bf16);
    randomize(g, rng);
    const Ids ids = random_ids(m, N, rng);
    g.begin_loss_sum();
    const cuda::CaptureResult summed =
        cuda::capture_without_sync([&] { g.forward_backward_summed(ids.tokens.data(), ids.targets.data(), B); });
    EXPECT_TRUE(summed.ok) << summed.error;
    std::printf("a captured micro-batch: %zu graph nodes\n", summed.nodes);
    const cuda::CaptureResult synced =
        cuda::capture_without_sync([&] { g.forward_backward(ids.tokens.data(), ids.targets.data(), B); });
    EXPECT_FALSE(synced.ok) << "the capture does not detect the loss's read-back: the first check proves nothing";
  }
}

}  // namespace
}  // namespace speedrun::test
