// A whole forward + backward of a tiny Track 3-shaped model on CUDA against the same model
// on the CPU (the reference checked against PyTorch): same parameters, same tokens.
// Compiled only in CUDA builds; without a device it reports "skipped: no CUDA device".
//
// The model runs in f32 on both sides (the CUDA model does not use bf16 activations yet),
// so the differences are summation order only: fp32 GEMMs in cuBLASLt's order against
// OpenBLAS's, tiled attention against the CPU's blocks, two-level column sums. Through two
// layers these stay far below 1e-3 of each gradient's scale; the loss to 1e-5 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/cuda_info.h"
#include "core/device_memory.h"
#include "model/gpt.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

config::ModelConfig tiny_config() {
  config::ModelConfig m;
  m.vocab_size = 300;
  m.padded_vocab_size = 320;
  m.n_layer = 2;
  m.d_model = 128;
  m.n_head = 2;
  m.head_dim = 64;
  m.seq_len = 80;  // more than one 64-row attention tile, not a multiple of it
  return m;
}

TEST(CudaModel, ForwardBackwardMatchesCpu) {
  const CudaStatus cuda = query_cuda();
  if (cuda.devices.empty()) GTEST_SKIP() << "skipped: no CUDA device (" << cuda.no_device_reason << ")";
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SPEEDRUN_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);

  const config::ModelConfig m = tiny_config();
  const int64_t B = 2, N = B * m.seq_len;
  model::Gpt cpu(m, Device::cpu, B), gpu(m, Device::cuda, B);

  // Random parameters everywhere (the spec's init zeroes the head, which would zero every
  // trunk gradient): gains near 1, everything else small.
  const int64_t total = cpu.layout().total_numel();
  std::uniform_real_distribution<float> small(-0.2f, 0.2f), near_one(0.8f, 1.2f);
  for (const auto& spec : cpu.layout().params()) {
    const bool gains = spec.name.find("gains") != std::string::npos;
    for (int64_t i = 0; i < spec.numel; ++i) cpu.params()[spec.offset + i] = gains ? near_one(rng) : small(rng);
  }
  device_copy(gpu.params(), cpu.params(), static_cast<size_t>(total) * sizeof(float));
  cpu.zero_grad();
  gpu.zero_grad();

  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(m.vocab_size - 1));
  std::vector<int32_t> tokens(N), targets(N);
  for (int32_t& t : tokens) t = id(rng);
  for (int32_t& t : targets) t = id(rng);

  const double loss_cpu = cpu.forward_backward(tokens.data(), targets.data(), B);
  const double loss_gpu = gpu.forward_backward(tokens.data(), targets.data(), B);
  EXPECT_NEAR(loss_gpu, loss_cpu, 1e-5 * std::fabs(loss_cpu));

  std::vector<float> grads(static_cast<size_t>(total));
  device_copy(grads.data(), gpu.grads(), grads.size() * sizeof(float));
  for (const auto& spec : cpu.layout().params()) {
    const std::vector<float> got(grads.begin() + spec.offset, grads.begin() + spec.offset + spec.numel);
    const std::vector<double> want(cpu.grads() + spec.offset, cpu.grads() + spec.offset + spec.numel);
    expect_near_rel("grad " + spec.name, got, want, 1e-3);
  }

  // Validation loss and the capped logits.
  EXPECT_NEAR(gpu.forward_loss(tokens.data(), targets.data(), B), cpu.forward_loss(tokens.data(), targets.data(), B),
              1e-5 * std::fabs(loss_cpu));
  std::vector<float> logits_cpu(static_cast<size_t>(N * m.padded_vocab_size));
  std::vector<float> logits_gpu(logits_cpu.size(), std::numeric_limits<float>::quiet_NaN());
  cpu.forward_logits(tokens.data(), B, logits_cpu.data());
  gpu.forward_logits(tokens.data(), B, logits_gpu.data());
  expect_near_rel("logits", logits_gpu, std::vector<double>(logits_cpu.begin(), logits_cpu.end()), 1e-4);
}

}  // namespace
}  // namespace speedrun::test
