// The CUDA optimizers (kernels/optim/*.cu behind src/optim/*.cpp) against the CPU
// optimizers (the reference checked against PyTorch), through the same Optimizer interface
// and config entries, on fresh random parameters and gradients (seed printed;
// SPEEDRUN_TEST_SEED replays). Compiled only in CUDA builds; without a visible device every
// test reports "skipped: no CUDA device" (GTEST_SKIP, shown by CTest as skipped).
//
// Method. Both optimizers start from the same parameters with zero state (as a run does);
// every step draws fresh gradients (never zeros), so from the second step on the moments /
// momentum are random too. Before each step the device parameters are overwritten with the
// CPU's, so each step's update is compared on its own (a tolerance per step, not one
// compounded over the run); the state is never reset, so a wrong state update shows up in
// later steps. Device scratch buffers are poisoned with NaN at construction
// (cuda::set_poison_scratch), so a kernel that reads scratch nobody wrote fails.
//
// Tolerances (update = p_after - p_before; max over the matrix's CPU update):
//  - AdamW, RMNP, the momentum: the kernels round every operation as the CPU does, so the
//    results are expected to be bitwise equal except RMNP's norm (double sums in another
//    order: differences in the last bits of a double, invisible after the cast to float)
//    and sqrt/division edge cases; we allow 1e-5 relative to the update's scale.
//  - Newton-Schulz in fp32: cuBLAS and OpenBLAS sum in different orders (~1e-7 relative
//    per product); the cubic iteration's slope is up to 1.5 at small singular values, so
//    over 12 steps a difference can grow up to 1.5^12 ~ 130x along those directions:
//    1e-3 of the update's largest element, and 1e-4 relative in Frobenius norm.
//  - Newton-Schulz in bf16: the device rounds each GEMM's fused result once where the CPU's
//    bf16 mode rounds each of torch's intermediate tensors (c A, (c A) A, b A, B X, a X)
//    separately, so the two iterates differ by bf16 roundings (2^-9 relative) at every
//    step, amplified as above along small singular directions. Elementwise bounds are
//    meaningless there; the Frobenius norm of the difference is bounded by 5% of the
//    update's (measured CPU bf16 vs fp32 differences of such runs are ~1e-2). Any
//    structural error (transpose, coefficient, scale, Nesterov, weight decay) moves the
//    update by O(1) and fails it.
//  - Newton-Muon (statistics, Cholesky inverse, G P) is compared with Newton-Schulz in
//    fp32 so that the preconditioner is what is tested: LAPACK's and cuSOLVER's Cholesky
//    inverses differ by ~cond(C + r I) 1e-7 (the ridge keeps cond small), then as fp32 NS.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bf16_host.h"
#include "config/run_config.h"
#include "core/buffer.h"
#include "core/cuda_info.h"
#include "core/device_memory.h"
#include "dist/communicator.h"
#include "kernels/optim/optim_cuda.h"
#include "model/gpt.h"
#include "optim/optimizer.h"
#include "test_support.h"

namespace speedrun::test {
namespace {

// One seed per process, printed once; each test derives its stream from it (seed + i).
uint64_t optim_seed() { return process_seed("test_cuda_optim"); }


struct Shape {
  std::string name;
  std::vector<int64_t> dims;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
};

Tensor make_tensor(void* p, Device d, const std::vector<int64_t>& dims) {
  switch (dims.size()) {
    case 1: return Tensor(p, DType::f32, d, {dims[0]});
    case 2: return Tensor(p, DType::f32, d, {dims[0], dims[1]});
    default: return Tensor(p, DType::f32, d, {dims[0], dims[1], dims[2]});
  }
}

// One parameter group held twice: on the host for the CPU optimizer, on the device for
// the CUDA one.
struct TwinGroup {
  std::vector<Shape> shapes;
  std::vector<std::vector<float>> p_host, g_host;
  std::vector<Buffer> p_dev, g_dev;

  explicit TwinGroup(std::vector<Shape> s, std::mt19937_64& rng) : shapes(std::move(s)) {
    std::normal_distribution<float> n(0.0f, 0.5f);
    for (const Shape& sh : shapes) {
      std::vector<float> p(static_cast<size_t>(sh.numel()));
      for (float& v : p) v = n(rng);
      p_host.push_back(p);
      g_host.emplace_back(p.size(), 0.0f);
      p_dev.emplace_back(Device::cuda, p.size() * 4);
      g_dev.emplace_back(Device::cuda, p.size() * 4);
    }
  }
  std::vector<optim::ParamRef> refs(Device d) {
    std::vector<optim::ParamRef> r;
    for (size_t k = 0; k < shapes.size(); ++k) {
      void* p = d == Device::cpu ? static_cast<void*>(p_host[k].data()) : p_dev[k].data();
      void* g = d == Device::cpu ? static_cast<void*>(g_host[k].data()) : g_dev[k].data();
      r.push_back({shapes[k].name, make_tensor(p, d, shapes[k].dims), make_tensor(g, d, shapes[k].dims)});
    }
    return r;
  }
  // Fresh gradients on both sides and the device parameters set to the host's.
  void next_step(std::mt19937_64& rng, double grad_scale) {
    std::normal_distribution<float> n(0.0f, static_cast<float>(grad_scale));
    for (size_t k = 0; k < shapes.size(); ++k) {
      for (float& v : g_host[k]) v = n(rng);
      device_copy(g_dev[k].data(), g_host[k].data(), g_host[k].size() * 4);
      device_copy(p_dev[k].data(), p_host[k].data(), p_host[k].size() * 4);
    }
  }
  std::vector<float> device_param(size_t k) const {
    std::vector<float> v(p_host[k].size());
    device_copy(v.data(), p_dev[k].data(), v.size() * 4);  // synchronizes: the step is done
    return v;
  }
};

struct Tolerance {
  double elementwise = 0.0;  // of the update's largest |element|; 0: not checked
  double frobenius = 0.0;    // relative Frobenius norm of the update difference; 0: not checked
};

// Compares the update of parameter k: CPU (before -> after) against the device's after.
void expect_update_near(const std::vector<float>& before, const std::vector<float>& cpu_after,
                        const std::vector<float>& gpu_after, const Tolerance& tol, const std::string& what) {
  double scale = 0.0, diff2 = 0.0, norm2 = 0.0, worst = 0.0;
  size_t worst_i = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    const double want = static_cast<double>(cpu_after[i]) - before[i];
    const double got = static_cast<double>(gpu_after[i]) - before[i];
    ASSERT_TRUE(std::isfinite(gpu_after[i])) << what << ": element " << i << " is " << gpu_after[i];
    scale = std::max(scale, std::fabs(want));
    norm2 += want * want;
    diff2 += (got - want) * (got - want);
    if (std::fabs(got - want) > worst) worst = std::fabs(got - want), worst_i = i;
  }
  ASSERT_GT(scale, 0.0) << what << ": the CPU update is zero (the test would prove nothing)";
  if (tol.elementwise > 0.0)
    EXPECT_LE(worst, tol.elementwise * scale) << what << ": element " << worst_i << " differs by " << worst
                                              << " (update scale " << scale << ")";
  if (tol.frobenius > 0.0)
    EXPECT_LE(std::sqrt(diff2), tol.frobenius * std::sqrt(norm2)) << what << ": relative Frobenius difference "
                                                                 << std::sqrt(diff2 / norm2);
}

class CudaOptimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_CUDA();
    cuda::set_poison_scratch(true);
  }
  void TearDown() override {
    if (have_cuda_device()) cuda::set_poison_scratch(false);
  }

  // Runs `steps` steps of the entry on both devices and compares every update. `capture`
  // feeds both optimizers' sinks on capture steps (Newton-Muon).
  using CaptureFn = std::function<void(model::LayerInputSink* cpu, model::LayerInputSink* gpu, std::mt19937_64& rng)>;
  void compare(const config::OptimizerConfig& entry, TwinGroup& group, int steps, const Tolerance& tol,
               const CaptureFn& capture = nullptr, nlohmann::json* cpu_metrics = nullptr,
               nlohmann::json* gpu_metrics = nullptr) {
    std::mt19937_64 rng(optim_seed());
    const auto comm = dist::make_local_communicator();
    auto cpu = optim::make_optimizer(entry, group.refs(Device::cpu), {comm.get()});
    auto gpu = optim::make_optimizer(entry, group.refs(Device::cuda), {comm.get()});
    EXPECT_STREQ(cpu->type(), gpu->type());
    for (int s = 0; s < steps; ++s) {
      group.next_step(rng, 0.1 + 0.05 * s);
      model::LayerInputSink* cs = cpu->capture_sink(s);
      model::LayerInputSink* gs = gpu->capture_sink(s);
      ASSERT_EQ(cs == nullptr, gs == nullptr) << "step " << s;
      if (cs && capture) capture(cs, gs, rng);
      const std::vector<std::vector<float>> before = group.p_host;
      const double lr_factor = 1.0 - 0.1 * s;  // the schedule varies between steps
      cpu->step(s, lr_factor);
      gpu->step(s, lr_factor);
      for (size_t k = 0; k < group.shapes.size(); ++k)
        expect_update_near(before[k], group.p_host[k], group.device_param(k), tol,
                           entry.type + " step " + std::to_string(s) + " " + group.shapes[k].name);
    }
    EXPECT_EQ(cpu->state_bytes() > 0, gpu->state_bytes() > 0);
    if (cpu_metrics) *cpu_metrics = cpu->metrics();
    if (gpu_metrics) *gpu_metrics = gpu->metrics();
  }
};

using CudaOptimTest_CaptureFn =
    std::function<void(model::LayerInputSink* cpu, model::LayerInputSink* gpu, std::mt19937_64& rng)>;

config::OptimizerConfig entry_of(config::OptimizerSettings settings, const std::string& type, double lr, double wd) {
  config::OptimizerConfig e;
  e.type = type;
  e.params = {"*"};
  e.lr = lr;
  e.weight_decay = wd;
  e.settings = std::move(settings);
  return e;
}

TEST_F(CudaOptimTest, AdamWMatchesCpu) {
  std::mt19937_64 rng(optim_seed() + 1);
  // One element, odd sizes, a 3-D tensor and one spanning several 64 Ki-element chunks.
  TwinGroup group({{"a", {1}}, {"b", {37}}, {"c", {64, 33}}, {"d", {5, 7, 3}}, {"e", {2 * 65536 + 5}}}, rng);
  config::AdamWSettings s;
  s.betas = {0.8, 0.95};
  s.eps = 1e-10;
  compare(entry_of(s, "adamw", 0.01, 0.1), group, 5, {.elementwise = 1e-5});
}

// Same shapes batched together (three 40x40), tall ones transposed on the CPU and not on
// the device (72x33), wide (33x100), a single row (1x17) and a single column (19x1).
std::vector<Shape> matrix_shapes() {
  return {{"m0", {40, 40}}, {"m1", {72, 33}}, {"m2", {40, 40}}, {"m3", {33, 100}},
          {"m4", {72, 33}}, {"m5", {40, 40}}, {"m6", {1, 17}},  {"m7", {19, 1}}};
}

TEST_F(CudaOptimTest, MuonFp32MatchesCpu) {
  for (const bool nesterov : {true, false}) {
    SCOPED_TRACE(nesterov ? "nesterov" : "plain momentum");
    std::mt19937_64 rng(optim_seed() + 2);
    TwinGroup group(matrix_shapes(), rng);
    config::MuonSettings s;
    s.nesterov = nesterov;
    s.ns_precision = "fp32";
    s.momentum_warmup_start = 0.85;
    s.momentum_warmup_steps = 3;
    compare(entry_of(s, "muon", 0.02, 0.05), group, 4, {.elementwise = 1e-3, .frobenius = 1e-4});
  }
}

TEST_F(CudaOptimTest, MuonBf16MatchesCpuBf16Mode) {
  for (const std::string preset : {"cubic", "quintic"}) {
    SCOPED_TRACE(preset);
    std::mt19937_64 rng(optim_seed() + 3);
    TwinGroup group(matrix_shapes(), rng);
    config::MuonSettings s;
    s.ns_preset = preset;
    s.ns_precision = "bf16";
    compare(entry_of(s, "muon", 0.02, 0.05), group, 4, {.frobenius = 0.05});
  }
}

TEST_F(CudaOptimTest, RmnpMatchesCpu) {
  for (const bool nesterov : {true, false}) {
    SCOPED_TRACE(nesterov ? "nesterov" : "plain momentum");
    std::mt19937_64 rng(optim_seed() + 4);
    std::vector<Shape> shapes = matrix_shapes();
    shapes.push_back({"wide", {3, 1000}});  // rows longer than the block: several elements per thread
    TwinGroup group(shapes, rng);
    config::RmnpSettings s;
    s.nesterov = nesterov;
    compare(entry_of(s, "rmnp", 0.005, 0.1), group, 4, {.elementwise = 1e-5});
  }
}

// A two-layer Newton-Muon group with every capture point: q/k/v (one statistic of width
// d = 40, with a tall k and a wide v), attn.proj (input width 48), mlp.fc (tall, 160x40)
// and mlp.proj (input 160 wide in 4 blocks of 40).
std::vector<Shape> newton_muon_shapes() {
  std::vector<Shape> s;
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    s.push_back({b + "attn.q.weight", {40, 40}});
    s.push_back({b + "attn.k.weight", {56, 40}});
    s.push_back({b + "attn.v.weight", {24, 40}});
    s.push_back({b + "attn.proj.weight", {40, 48}});
    s.push_back({b + "mlp.fc.weight", {160, 40}});
    s.push_back({b + "mlp.proj.weight", {40, 160}});
  }
  return s;
}

// Feeds both sinks the same inputs of every point of both layers, `micro` micro-batches of
// `tokens` rows: f32 on both sides, or bf16 on the device and the same (bf16-exact)
// values as f32 on the CPU. The device inputs go to `keep`, which must outlive the step
// (the captures' GEMMs are queued, not finished, when capture() returns).
void capture_inputs(model::LayerInputSink* cpu, model::LayerInputSink* gpu, std::mt19937_64& rng, DType device_type,
                    int micro, int64_t tokens, std::vector<Buffer>& keep) {
  std::normal_distribution<float> n(0.0f, 1.0f);
  const std::pair<model::CapturePoint, int64_t> points[] = {{model::CapturePoint::attn_qkv, 40},
                                                            {model::CapturePoint::attn_proj, 48},
                                                            {model::CapturePoint::mlp_fc, 40},
                                                            {model::CapturePoint::mlp_proj, 160}};
  for (int m = 0; m < micro; ++m)
    for (int64_t l = 0; l < 2; ++l)
      for (const auto& [point, width] : points) {
        std::vector<float> x(static_cast<size_t>(tokens * width));
        for (size_t i = 0; i < x.size(); ++i) x[i] = n(rng) + 0.3f * static_cast<float>(i % width) / width;
        Buffer dev;
        if (device_type == DType::bf16) {
          std::vector<uint16_t> bits(x.size());
          for (size_t i = 0; i < x.size(); ++i) bits[i] = to_bf16_bits(x[i]), x[i] = from_bf16_bits(bits[i]);
          dev = Buffer(Device::cuda, bits.size() * 2);
          device_copy(dev.data(), bits.data(), bits.size() * 2);
        } else {
          dev = Buffer(Device::cuda, x.size() * 4);
          device_copy(dev.data(), x.data(), x.size() * 4);
        }
        cpu->capture(l, point, Tensor::of(x.data(), {tokens, width}));
        gpu->capture(l, point, Tensor(dev.data(), device_type, Device::cuda, {tokens, width}));
        keep.push_back(std::move(dev));
      }
}

config::NewtonMuonSettings newton_muon_settings(double ridge) {
  config::NewtonMuonSettings s;
  s.refresh_every = 2;  // refreshes at steps 1, 3 and 5
  s.ridge = ridge;
  s.ema_beta = 0.3;
  s.mlp_proj_blocks = 4;
  s.ns_precision = "fp32";
  s.momentum_warmup_start = 0.85;
  s.momentum_warmup_steps = 4;
  return s;
}

TEST_F(CudaOptimTest, NewtonMuonMatchesCpuWithRefreshes) {
  for (const DType input : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(std::string("captured inputs ") + dtype_name(input));
    std::mt19937_64 rng(optim_seed() + 5);
    TwinGroup group(newton_muon_shapes(), rng);
    config::NewtonMuonSettings s = newton_muon_settings(0.2);
    // With bf16 inputs, mlp.proj is left to plain Muon: a group mixing preconditioned and
    // plain matrices.
    if (input == DType::bf16) s.precondition = {"attn_qkv", "attn_proj", "mlp_fc"};
    nlohmann::json cm, gm;
    std::vector<Buffer> keep;
    compare(
        entry_of(s, "newton_muon", 0.02, 0.025), group, 6, {.elementwise = 1e-3, .frobenius = 2e-4},
        [&](model::LayerInputSink* c, model::LayerInputSink* g, std::mt19937_64& r) {
          capture_inputs(c, g, r, input, 2, 67, keep);
        },
        &cm, &gm);
    EXPECT_EQ(cm, gm);
    EXPECT_EQ(gm["refreshes"], 3);
    EXPECT_EQ(gm["cholesky_failures"], 0);
  }
}

TEST_F(CudaOptimTest, NewtonMuonCholeskyFailureFallsBackToIdentity) {
  // A ridge below -1 makes C + r I indefinite (as tests/unit/test_newton_muon.cpp forces
  // it): every block fails on both sides and uses P = I, i.e. plain Muon on the raw
  // gradient; the device counts the failures without a host round-trip.
  std::mt19937_64 rng(optim_seed() + 6);
  TwinGroup group(newton_muon_shapes(), rng);
  config::NewtonMuonSettings s = newton_muon_settings(-1.5);
  nlohmann::json cm, gm;
  std::vector<Buffer> keep;
  compare(
      entry_of(s, "newton_muon", 0.02, 0.025), group, 4, {.elementwise = 1e-3, .frobenius = 1e-4},
      [&](model::LayerInputSink* c, model::LayerInputSink* g, std::mt19937_64& r) {
        capture_inputs(c, g, r, DType::f32, 1, 50, keep);
      },
      &cm, &gm);
  EXPECT_EQ(cm, gm);
  // Per layer: q/k/v, attn.proj, mlp.fc (one block each) and mlp.proj (4 blocks) = 7
  // blocks, 2 layers, 2 refreshes (steps 1 and 3).
  EXPECT_EQ(gm["cholesky_failures"], 28);
}

// The bf16 weight copies the update kernels write (ParamRef::copy, SPEEDRUN_WEIGHT_COPIES=
// optimizer). Each copy starts as NaN bits; after every step each element must be exactly
// the round-to-nearest-even bf16 of the device's new f32 parameter (what ops::convert, the
// separate pass it replaces, writes): no tolerance, the kernel rounds the very float it
// stores. The negative control: the same optimizer without copies lent lists none and
// leaves the NaN bits untouched (a kernel writing through a null or stale pointer, or a
// copy written from the old value, fails one of the two).
void expect_copies_written(const config::OptimizerConfig& entry, const std::vector<Shape>& shapes, uint64_t seed,
                           bool lend, const CudaOptimTest_CaptureFn& capture = nullptr) {
  std::mt19937_64 rng(seed);
  TwinGroup group(shapes, rng);
  constexpr uint16_t kPoison = 0x7fc1;  // a NaN no rounding produces (to_bf16_bits gives 0x7fc0)
  std::vector<Buffer> copies;
  std::vector<optim::ParamRef> refs = group.refs(Device::cuda), cpu_refs = group.refs(Device::cpu);
  for (size_t k = 0; k < shapes.size(); ++k) {
    const std::vector<uint16_t> poison(static_cast<size_t>(shapes[k].numel()), kPoison);
    copies.emplace_back(Device::cuda, poison.size() * 2);
    device_copy(copies.back().data(), poison.data(), poison.size() * 2);
    refs[k].index = cpu_refs[k].index = k;
    if (lend) {
      refs[k].copy = make_tensor(copies.back().data(), Device::cuda, shapes[k].dims);
      refs[k].copy.dtype = DType::bf16;
    }
  }
  const auto comm = dist::make_local_communicator();
  auto gpu = optim::make_optimizer(entry, refs, {comm.get()});
  auto cpu = optim::make_optimizer(entry, cpu_refs, {comm.get()});  // feeds Newton-Muon's capture only
  std::vector<size_t> all(shapes.size());
  for (size_t k = 0; k < all.size(); ++k) all[k] = k;
  EXPECT_EQ(gpu->weight_copies_written(), lend ? all : std::vector<size_t>{}) << entry.type;
  EXPECT_TRUE(cpu->weight_copies_written().empty()) << entry.type << ": a CPU optimizer writes no copy";
  std::vector<Buffer> keep;
  for (int s = 0; s < 3; ++s) {
    group.next_step(rng, 0.1 + 0.05 * s);
    model::LayerInputSink* gs = gpu->capture_sink(s);
    if (gs && capture) capture(cpu->capture_sink(s), gs, rng);
    gpu->step(s, 1.0 - 0.1 * s);
    for (size_t k = 0; k < shapes.size(); ++k) {
      const std::vector<float> p = group.device_param(k);
      std::vector<uint16_t> bits(p.size());
      device_copy(bits.data(), copies[k].data(), bits.size() * 2);
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < p.size(); ++i) {
        const uint16_t want = lend ? to_bf16_bits(p[i]) : kPoison;
        if (bits[i] != want && bad++ == 0) first = i;
      }
      EXPECT_EQ(bad, 0u) << entry.type << " step " << s << " " << shapes[k].name << (lend ? " copy" : " (not lent)")
                         << ": " << bad << " of " << p.size() << " elements differ, first " << first << " (bits "
                         << bits[first] << ", parameter " << p[first] << ")";
      // The parameter really moved (the copy check would be vacuous on a no-op step).
      EXPECT_NE(std::memcmp(p.data(), group.p_host[k].data(), p.size() * 4), 0) << shapes[k].name;
    }
  }
}

TEST_F(CudaOptimTest, UpdateKernelsWriteTheBf16WeightCopies) {
  const uint64_t seed = optim_seed() + 7;
  config::AdamWSettings adamw;
  config::MuonSettings muon;  // bf16 Newton-Schulz, the GPU default
  config::RmnpSettings rmnp;
  for (const bool lend : {true, false}) {
    SCOPED_TRACE(lend ? "copies lent" : "no copies");
    // AdamW: odd sizes, a 3-D tensor, a parameter spanning three 64 Ki-element chunks.
    expect_copies_written(entry_of(adamw, "adamw", 0.01, 0.1),
                          {{"a", {1}}, {"b", {37}}, {"c", {64, 33}}, {"d", {5, 7, 3}}, {"e", {2 * 65536 + 5}}}, seed,
                          lend);
    expect_copies_written(entry_of(muon, "muon", 0.02, 0.05), matrix_shapes(), seed, lend);
    std::vector<Shape> rmnp_shapes = matrix_shapes();
    rmnp_shapes.push_back({"wide", {3, 1000}});
    expect_copies_written(entry_of(rmnp, "rmnp", 0.005, 0.1), rmnp_shapes, seed, lend);
    std::vector<Buffer> keep;
    expect_copies_written(entry_of(newton_muon_settings(0.2), "newton_muon", 0.02, 0.025), newton_muon_shapes(), seed,
                          lend, [&](model::LayerInputSink* c, model::LayerInputSink* g, std::mt19937_64& r) {
                            capture_inputs(c, g, r, DType::f32, 1, 50, keep);
                          });
  }
}

}  // namespace
}  // namespace speedrun::test
