// model.arch record26 on CUDA against the same model on the CPU (the CPU model is checked
// against a float64 PyTorch reference: test_reference_record26.py): same parameters, same
// tokens, whole training steps. Compiled only in CUDA builds; without a device every test
// reports "skipped: no CUDA device". NOT YET RUN ON A GPU.
//
// The test model has what the CUDA path must get right: 8 layers (layer 7 without attention,
// value embeddings in layers 0-2 and 5-7, U-net skips), head_dim 64 (a CUDA attention size),
// T = 200 (not a multiple of the 64- and 128-row tiles), window blocks of 16 tokens (so the
// window cuts inside the tiles), separators with probability 1/25 (~8 documents per row),
// B = 2. Run positions 0, 1/2 and 1 of the run: windows of 1, 7 and 13 long blocks (the short
// layers half of that), so steps where the window changes are compared.
//
// Tolerances. f32 activations: summation order only (cuBLASLt against OpenBLAS, the tiled
// attention, fp64 dots in another order), as CudaModel.ForwardBackwardMatchesCpu: loss 1e-5
// relative, every gradient 1e-3 of its tensor's scale (expect_near_rel). bf16 activations: the
// argument of test_cuda_model.cpp (rounding to 8 bits at every stored activation, ~15 per
// layer each way): loss 1e-2, gradients 5e-2 of the scale; record26 has 8 layers, not 2, but
// its residual stream is scaled by learned scalars near 1 and the same bound holds by the
// same random-walk estimate (sqrt(8 / 2) x 1.5% ~ 3%).
// Parameters after optimizer steps: see expect_params_near.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/device_memory.h"
#include "dist/communicator.h"
#include "model/record26.h"
#include "model/registry.h"
#include "optim/optimizer.h"
#include "test_ops_common.h"
#include "record26_test_config.h"
#include "test_support.h"

namespace speedrun::test {
namespace {

config::ModelConfig cuda_record26() { return record26_test_config("LSSLSSLL", 128, 64, 200, 16); }

constexpr int64_t kSteps = 10;  // the run's length for the run positions

// Random parameters everywhere (the spec's init zeroes the head and the projections, which
// would zero most gradients): matrices and embeddings small, scalars near their init.
void randomize(model::Record26& cpu, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> small(-0.2f, 0.2f), jitter(-0.3f, 0.3f);
  const auto& layout = cpu.layout();
  const std::vector<float> init(layout.find("scalars").values.begin(), layout.find("scalars").values.end());
  for (const auto& spec : layout.params()) {
    float* p = cpu.params() + spec.offset;
    for (int64_t i = 0; i < spec.numel; ++i)
      p[i] = spec.name == "scalars" ? init[static_cast<size_t>(i)] + jitter(rng) : small(rng);
  }
}

void copy_params(model::Record26& gpu, model::Record26& cpu) {
  device_copy(gpu.params(), cpu.params(), static_cast<size_t>(cpu.layout().total_numel()) * sizeof(float));
  gpu.weights_changed();
}

std::vector<float> host_copy(const float* device_ptr, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  device_copy(v.data(), device_ptr, v.size() * sizeof(float));
  return v;
}

void expect_grads_near(model::Record26& gpu, model::Record26& cpu, double tol) {
  const std::vector<float> grads = host_copy(gpu.grads(), cpu.layout().total_numel());
  for (const auto& spec : cpu.layout().params()) {
    const std::vector<float> got(grads.begin() + spec.offset, grads.begin() + spec.offset + spec.numel);
    const std::vector<double> want(cpu.grads() + spec.offset, cpu.grads() + spec.offset + spec.numel);
    expect_near_rel("grad " + spec.name, got, want, tol);
  }
}

// Tokens with separators: ~8 documents per row of 200 (and a negative control on that).
void draw_tokens(const config::ModelConfig& m, std::mt19937_64& rng, std::vector<int32_t>& tokens,
                 std::vector<int32_t>& targets) {
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(m.vocab_size - 2));
  std::bernoulli_distribution separator(1.0 / 25);
  for (int32_t& t : tokens) t = separator(rng) ? static_cast<int32_t>(m.doc_separator) : id(rng);
  for (int32_t& t : targets) t = id(rng);
  const int64_t separators = std::count(tokens.begin(), tokens.end(), static_cast<int32_t>(m.doc_separator));
  ASSERT_GT(separators, static_cast<int64_t>(tokens.size()) / 60);
}

void step_matches_cpu(DType act, double loss_tol, double grad_tol) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SPEEDRUN_TEST_SEED replays it), " + dtype_name(act));
  std::mt19937_64 rng(seed);
  const config::ModelConfig m = cuda_record26();
  const int64_t B = 2, N = B * m.seq_len;
  model::Record26 cpu(m, Device::cpu, B), gpu(m, Device::cuda, B, act);
  ASSERT_EQ(gpu.activation_dtype(), act);
  randomize(cpu, rng);
  copy_params(gpu, cpu);
  std::vector<int32_t> tokens(2 * N), targets(2 * N);
  draw_tokens(m, rng, tokens, targets);
  for (const int64_t step : {int64_t{0}, kSteps / 2, kSteps}) {
    const model::RunPosition at{step, kSteps};
    SCOPED_TRACE("step " + std::to_string(step) + ", long window " +
                 std::to_string(model::Record26::long_window_blocks(m, at)) + " blocks");
    cpu.zero_grad();
    gpu.zero_grad();
    // Two micro-batches accumulating into the gradients, as a training step's.
    double loss_cpu = 0.0, loss_gpu = 0.0;
    for (int64_t k = 0; k < 2; ++k) {
      loss_cpu += cpu.forward_backward(tokens.data() + k * N, targets.data() + k * N, B, nullptr, at);
      loss_gpu += gpu.forward_backward(tokens.data() + k * N, targets.data() + k * N, B, nullptr, at);
    }
    EXPECT_NEAR(loss_gpu, loss_cpu, loss_tol * std::fabs(loss_cpu));
    expect_grads_near(gpu, cpu, grad_tol);
    EXPECT_NEAR(gpu.forward_loss(tokens.data(), targets.data(), B, at),
                cpu.forward_loss(tokens.data(), targets.data(), B, at), loss_tol * std::fabs(loss_cpu));
  }
  // The capped logits at the end of the run (f32 head product, the sigmoid cap on CUDA).
  std::vector<float> logits_cpu(static_cast<size_t>(N * m.padded_vocab_size));
  std::vector<float> logits_gpu(logits_cpu.size(), std::numeric_limits<float>::quiet_NaN());
  cpu.forward_logits(tokens.data(), B, logits_cpu.data(), {kSteps, kSteps});
  gpu.forward_logits(tokens.data(), B, logits_gpu.data(), {kSteps, kSteps});
  expect_near_rel("logits", logits_gpu, std::vector<double>(logits_cpu.begin(), logits_cpu.end()),
                  act == DType::f32 ? 1e-4 : 1e-2);
}

TEST(CudaModel, Record26StepMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  step_matches_cpu(DType::f32, 1e-5, 1e-3);
}

TEST(CudaModel, Record26Bf16StepMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  step_matches_cpu(DType::bf16, 1e-2, 5e-2);
}

// The spec's optimizers: Muon on the blocks' matrices, Adam (betas 0.8, 0.95, eps 1e-10) on the
// embeddings, the head and the scalars; small learning rates so that a few steps stay near.
std::vector<config::OptimizerConfig> spec_optimizers() {
  config::OptimizerConfig adam, muon;
  adam.type = "adamw";
  adam.select_settings("adamw");
  adam.params = {"embed.weight", "value_embeds.*", "lm_head.weight", "scalars"};
  adam.lr = 1e-3;
  muon.type = "muon";
  muon.select_settings("muon");
  muon.params = {"blocks.*"};
  muon.lr = 5e-3;
  return {adam, muon};
}

// Parameters after `steps` optimizer steps. Each step moves an element by about lr at most
// (Adam's normalized update, whose bias-corrected ratio m/sqrt(v) stays below ~1.5 in the
// first steps; Muon's orthogonalized update is of that order too), so the device and the CPU
// can differ by ~2 lr per step where a gradient element is so near zero that the two
// gradients' rounding gives it opposite signs (Adam's first step is lr sign(g)): bounded by
// 3 lr per step. Everything else agrees to 1e-4 of the tensor's scale plus 5% of the total
// movement (Muon's bf16 Newton-Schulz on either side differs by rounding); at most 1% of the
// elements may be the sign-flip case (the CPU reference test leaves such "noise-led" AdamW
// elements out the same way).
void expect_params_near(model::Record26& gpu, model::Record26& cpu, double lr, int64_t steps) {
  const std::vector<float> got_all = host_copy(gpu.params(), cpu.layout().total_numel());
  for (const auto& spec : cpu.layout().params()) {
    double scale = 0;
    for (int64_t i = 0; i < spec.numel; ++i) scale = std::max(scale, std::fabs(double(cpu.params()[spec.offset + i])));
    const double close = 1e-4 * scale + 0.05 * lr * static_cast<double>(steps);
    const double flip = 3.0 * lr * static_cast<double>(steps);
    int64_t flipped = 0;
    for (int64_t i = 0; i < spec.numel; ++i) {
      const double d = std::fabs(double(got_all[spec.offset + i]) - cpu.params()[spec.offset + i]);
      ASSERT_LE(d, flip) << spec.name << " element " << i;
      flipped += d > close;
    }
    EXPECT_LE(flipped, spec.numel / 100 + 1) << spec.name;
  }
}

TEST(CudaModel, Record26OptimizerStepsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SPEEDRUN_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  const config::ModelConfig m = cuda_record26();
  const int64_t B = 2, N = B * m.seq_len, steps = 3;
  model::Record26 cpu(m, Device::cpu, B), gpu(m, Device::cuda, B, DType::f32);
  randomize(cpu, rng);
  copy_params(gpu, cpu);
  const std::vector<config::OptimizerConfig> optimizers = spec_optimizers();
  const auto comm = dist::make_local_communicator();
  auto opts_cpu = optim::build_optimizers(optimizers, cpu, {comm.get()});
  auto opts_gpu = optim::build_optimizers(optimizers, gpu, {comm.get()});
  std::vector<int32_t> tokens(N), targets(N);
  draw_tokens(m, rng, tokens, targets);
  const std::vector<float> before(cpu.params(), cpu.params() + cpu.layout().total_numel());
  // Steps 4, 5, 6 of 10: the long window grows over them (5, 7, 8 blocks of 16).
  for (int64_t s = 0; s < steps; ++s) {
    const model::RunPosition at{4 + s, kSteps};
    for (model::Record26* model : {&cpu, &gpu}) {
      model->zero_grad();
      model->forward_backward(tokens.data(), targets.data(), B, nullptr, at);
    }
    for (auto& o : opts_cpu) o->step(s, 1.0);
    for (auto& o : opts_gpu) o->step(s, 1.0);
    cpu.weights_changed();
    gpu.weights_changed();
  }
  expect_params_near(gpu, cpu, 5e-3, steps);  // the larger of the two learning rates (Muon's)
  // Not vacuous: the steps moved the parameters by much more than the tolerance's close part.
  double moved = 0;
  for (int64_t i = 0; i < cpu.layout().total_numel(); ++i)
    moved = std::max(moved, std::fabs(double(cpu.params()[i]) - before[static_cast<size_t>(i)]));
  EXPECT_GT(moved, 1e-3);
}

// The model allocates what the memory plans say (a run checks the plans against free memory
// before allocating), in f32 and bf16.
TEST(CudaModel, Record26AllocatesWhatThePlanSays) {
  SKIP_WITHOUT_CUDA();
  const config::ModelConfig m = cuda_record26();
  for (const DType act : {DType::f32, DType::bf16}) {
    const model::Record26 gpu(m, Device::cuda, 3, act);
    EXPECT_EQ(gpu.activation_bytes(), model::plan_activation_bytes(m, Device::cuda, 3, act)) << dtype_name(act);
    EXPECT_EQ(gpu.weight_copy_bytes(), model::plan_weight_copy_bytes(m, Device::cuda, act)) << dtype_name(act);
  }
}

// ---- model.fp8_head on CUDA (kernels/ops/fp8_head.cu through model::head_loss) --------------
// The test model with the FP8 training head: seq_len 208 (cuBLASLt's FP8 products take
// dimensions that are multiples of 16; d = 128 and V = 128 already are), still not a multiple
// of the attention tiles.
config::ModelConfig cuda_record26_fp8(bool fp8) {
  config::ModelConfig m = cuda_record26();
  m.seq_len = 208;
  m.window_tokens = 208;
  m.fp8_head = fp8;
  return m;
}

// sqrt(sum (got - want)^2 / sum want^2) over one parameter's gradient.
double grad_rel_l2(const std::vector<float>& got, const float* want, const model::ParamSpec& spec) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < spec.numel; ++i) {
    const double w = want[spec.offset + i], e = double(got[static_cast<size_t>(spec.offset + i)]) - w;
    num += e * e;
    den += w * w;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// A training step (two accumulating micro-batches) with the FP8 head on CUDA against the CPU
// emulation (itself checked against PyTorch: TestRecord26Fp8HeadAgainstTorch), and evaluation,
// which takes the plain head: bitwise the CUDA model without model.fp8_head.
//
// Tolerances. The FP8 operands are rounded from values that differ between the devices
// (summation order in f32; bf16 activations on CUDA against f32 on the CPU), and an e4m3 (4
// significant bits) or e5m2 (3 bits) rounding that lands on the other side of a boundary moves
// that element by a whole spacing, 1/16 to 1/4 of itself. Per element that is far beyond the
// plain head's bounds, so gradients are compared as a relative L2 norm per tensor, where a
// fraction f of flipped elements weighs about sqrt(f) x 15%. For scale: the whole FP8
// rounding (the CPU's FP8 head against its plain head, this model, seeds 1-3) is 3-4% in every
// gradient and 1e-5 to 6e-5 of the loss, so the loss cannot tell the heads apart; the
// gradients can.
// - f32 activations: the trunk agrees to ~1e-6, so xq flips are rare (~1e-6 / 2^-3 per
//   element); the logits differ by summation order (fast-accumulating FP8 forward against
//   OpenBLAS in f32), moving a bf16 logit by one ulp at a rate of ~1e-2 and through it an
//   e5m2 gradient element at ~2% of those (CudaModel.Fp8HeadLossMatchesCpu's argument):
//   f ~ 1e-3, sqrt(f) x 15% ~ 0.5%: bound 1.5% per tensor (f up to ~1%; the trunk's gradients
//   are linear in dhf and inherit its relative error), the loss 1e-4 relative as the head's
//   own test. Negative control: the CPU's plain head is farther than the bound from the FP8
//   emulation in the head's gradient (3-4%, above), so the bound tells the two heads apart.
// - bf16 activations: hf itself is bf16 on CUDA, so e4m3(bf16(h) / x_s) differs from the CPU's
//   e4m3(h / x_s) for ~1% of the elements, the logits by ~1% of themselves, and through them
//   ~5% of the e5m2 gradient elements flip: sqrt(0.05) x 12% ~ 3%, on top of the bf16 trunk's
//   own rounding (Record26Bf16StepMatchesCpu): bound 10% per tensor, loss 1e-2. That bound
//   cannot tell the FP8 head from the plain one (the f32 case does); it checks the FP8 path
//   with bf16 activations (the bf16 hf and dhf, the f32 master weight), where a layout, scale
//   or dtype error gives errors of order 100%.
void fp8_step_matches_cpu(DType act, double loss_tol, double grad_tol) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SPEEDRUN_TEST_SEED replays it), " + dtype_name(act));
  std::mt19937_64 rng(seed);
  const config::ModelConfig m = cuda_record26_fp8(true), plain_cfg = cuda_record26_fp8(false);
  const int64_t B = 2, N = B * m.seq_len;
  model::Record26 cpu(m, Device::cpu, B), cpu_plain(plain_cfg, Device::cpu, B);
  model::Record26 gpu(m, Device::cuda, B, act), gpu_plain(plain_cfg, Device::cuda, B, act);
  randomize(cpu, rng);
  std::copy(cpu.params(), cpu.params() + cpu.layout().total_numel(), cpu_plain.params());
  cpu_plain.weights_changed();
  copy_params(gpu, cpu);
  copy_params(gpu_plain, cpu);
  std::vector<int32_t> tokens(2 * N), targets(2 * N);
  draw_tokens(m, rng, tokens, targets);
  const model::RunPosition at{kSteps / 2, kSteps};
  double loss_cpu = 0.0, loss_gpu = 0.0, loss_plain = 0.0;
  for (model::Record26* model : {&cpu, &cpu_plain, &gpu}) model->zero_grad();
  for (int64_t k = 0; k < 2; ++k) {
    loss_cpu += cpu.forward_backward(tokens.data() + k * N, targets.data() + k * N, B, nullptr, at);
    loss_plain += cpu_plain.forward_backward(tokens.data() + k * N, targets.data() + k * N, B, nullptr, at);
    loss_gpu += gpu.forward_backward(tokens.data() + k * N, targets.data() + k * N, B, nullptr, at);
  }
  EXPECT_NEAR(loss_gpu, loss_cpu, loss_tol * std::fabs(loss_cpu));
  const std::vector<float> grads = host_copy(gpu.grads(), cpu.layout().total_numel());
  for (const auto& spec : cpu.layout().params()) {
    if (spec.name == "scalars") continue;  // below: padding and unused entries have zero gradients
    EXPECT_LT(grad_rel_l2(grads, cpu.grads(), spec), grad_tol) << spec.name;
  }
  {
    const auto& spec = cpu.layout().find("scalars");
    std::vector<float> got(grads.begin() + spec.offset, grads.begin() + spec.offset + spec.numel);
    std::vector<double> want(cpu.grads() + spec.offset, cpu.grads() + spec.offset + spec.numel);
    expect_near_rel("grad scalars", got, want, grad_tol);
  }
  if (act == DType::f32) {
    const auto& head = cpu.layout().find("lm_head.weight");
    const std::vector<float> plain_grads(cpu_plain.grads(), cpu_plain.grads() + cpu.layout().total_numel());
    EXPECT_GT(grad_rel_l2(plain_grads, cpu.grads(), head), grad_tol) << "negative control: the plain head";
  }
  // Evaluation: the plain head, bitwise the CUDA model without the key (same kernels, same
  // parameters), and the CPU's within the plain head's tolerance.
  const double eval = gpu.forward_loss(tokens.data(), targets.data(), B, at);
  EXPECT_EQ(eval, gpu_plain.forward_loss(tokens.data(), targets.data(), B, at));
  EXPECT_NEAR(eval, cpu.forward_loss(tokens.data(), targets.data(), B, at), loss_tol * std::fabs(loss_cpu));
  std::vector<float> logits(static_cast<size_t>(N * m.padded_vocab_size)), logits_plain(logits.size());
  gpu.forward_logits(tokens.data(), B, logits.data(), at);
  gpu_plain.forward_logits(tokens.data(), B, logits_plain.data(), at);
  expect_bitwise_equal("logits against the plain head", logits, logits_plain);
}

TEST(CudaModel, Record26Fp8StepMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  fp8_step_matches_cpu(DType::f32, 1e-4, 1.5e-2);
}

TEST(CudaModel, Record26Fp8Bf16StepMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  fp8_step_matches_cpu(DType::bf16, 1e-2, 0.1);
}

// The FP8 head's one-byte buffers are in the activation arena: the model allocates what the
// memory plan says (its sizes: Record26Fp8Head.CudaPlanCountsTheFp8Buffers).
TEST(CudaModel, Record26Fp8AllocatesWhatThePlanSays) {
  SKIP_WITHOUT_CUDA();
  const config::ModelConfig m = cuda_record26_fp8(true);
  for (const DType act : {DType::f32, DType::bf16}) {
    const model::Record26 gpu(m, Device::cuda, 3, act);
    EXPECT_EQ(gpu.activation_bytes(), model::plan_activation_bytes(m, Device::cuda, 3, act)) << dtype_name(act);
    EXPECT_GT(gpu.activation_bytes(), model::plan_activation_bytes(cuda_record26_fp8(false), Device::cuda, 3, act));
  }
}

}  // namespace
}  // namespace speedrun::test
