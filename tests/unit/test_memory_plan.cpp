// The device memory plan (train/memory_plan.h) and the precision settings. Pure arithmetic:
// runs on the CPU. The plan's model lines come from the same carve code that allocates, so
// they are checked against what a CPU model really allocates; the CUDA-only lines (bf16
// activations, weight copies) against hand counts.
#include <gtest/gtest.h>
#include <malloc.h>
#include <omp.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "build_info.h"
#include "config/run_config.h"
#include "core/error.h"
#include "core/host_memory.h"
#include "dist/communicator.h"
#include "model/gpt.h"
#include "model/param_layout.h"
#include "model/precision.h"
#include "optim/capture_fan_out.h"
#include "optim/optimizer.h"
#include "test_ops_common.h"
#include "train/communication_plan.h"
#include "train/memory_plan.h"
#if SPEEDRUN_HAVE_CUDA
#include "kernels/ops/attention_flash.h"
#include "kernels/ops/ops_cuda.h"
#endif

namespace speedrun::test {
namespace {

config::ModelConfig small_model() {
  config::ModelConfig m;
  m.vocab_size = 300;
  m.padded_vocab_size = 320;
  m.n_layer = 2;
  m.d_model = 64;
  m.n_head = 2;
  m.head_dim = 32;
  m.seq_len = 48;
  return m;
}

config::RunConfig small_run(const std::string& matrix_optimizer) {
  config::RunConfig c;
  c.model = small_model();
  c.train.micro_batch_seqs = 3;
  c.train.batch_tokens = 3 * 48;
  config::OptimizerConfig adam;
  adam.type = "adamw";
  adam.select_settings("adamw");
  adam.params = {"embed.weight", "proj.*", "*.bias", "*gains"};
  adam.lr = 0.01;
  config::OptimizerConfig mat;
  mat.type = matrix_optimizer;
  mat.select_settings(matrix_optimizer);
  mat.params = {"blocks.*.weight"};
  mat.lr = 0.02;
  c.optimizers = {adam, mat};
  return c;
}

const train::MemoryItem* find_item(const train::MemoryPlan& p, const std::string& prefix) {
  for (const auto& i : p.items)
    if (i.what.rfind(prefix, 0) == 0) return &i;
  return nullptr;
}

size_t round64(size_t b) { return (b + 63) / 64 * 64; }

TEST(MemoryPlan, CpuLinesAreWhatTheModelAllocates) {
  const config::RunConfig c = small_run("muon");
  const model::Gpt gpt(c.model, Device::cpu, c.train.micro_batch_seqs);
  const train::MemoryPlan plan = train::plan_memory(c, Device::cpu, DType::f32, false);
  ASSERT_NE(find_item(plan, "parameters"), nullptr);
  EXPECT_EQ(find_item(plan, "parameters")->bytes, gpt.parameter_bytes());
  EXPECT_EQ(find_item(plan, "gradients")->bytes, gpt.parameter_bytes());
  EXPECT_EQ(find_item(plan, "activations")->bytes, gpt.activation_bytes());
  EXPECT_EQ(find_item(plan, "bf16 weight copies"), nullptr);  // none with f32
  EXPECT_EQ(gpt.weight_copy_bytes(), 0u);
  EXPECT_EQ(find_item(plan, "cuBLASLt"), nullptr);  // CUDA only
  EXPECT_EQ(find_item(plan, "optimizer state"), nullptr);
  // The CPU ops' scratch: the attention backward's B*H*T floats and two vocabulary rows
  // per thread for the cross-entropy.
  const auto& m = c.model;
  const size_t scratch = static_cast<size_t>(3 * m.n_head * m.seq_len) * 4 +
                         2 * static_cast<size_t>(m.padded_vocab_size) * 4 * static_cast<size_t>(omp_get_max_threads());
  ASSERT_NE(find_item(plan, "ops scratch"), nullptr);
  EXPECT_EQ(find_item(plan, "ops scratch")->bytes, scratch);
  EXPECT_TRUE(find_item(plan, "ops scratch")->transient);
  EXPECT_EQ(plan.total(), 2 * gpt.parameter_bytes() + gpt.activation_bytes() + scratch);
}

// What the heap holds: malloc's bytes in use, its mmapped chunks (large blocks) included.
size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// One training step of `c` on the CPU: the model, its optimizers, a forward-backward on
// fresh random tokens and the optimizer step. Returns the heap bytes held afterwards
// (measured while everything is still alive) beyond `before`.
size_t bytes_held_by_a_step(const config::RunConfig& c, size_t before, std::vector<size_t>* state_bytes = nullptr) {
  model::Gpt gpt(c.model, Device::cpu, c.train.micro_batch_seqs);
  gpt.init_parameters(static_cast<uint64_t>(test_seed()));
  const auto comm = dist::make_local_communicator();
  auto optimizers = optim::build_optimizers(c.optimizers, gpt, {comm.get()});
  const int64_t n = c.train.micro_batch_seqs * c.model.seq_len;
  std::vector<int32_t> tokens(static_cast<size_t>(n)), targets(tokens.size());
  std::mt19937 rng(static_cast<uint32_t>(test_seed()));
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(c.model.vocab_size - 1));
  for (auto& t : tokens) t = id(rng);
  for (auto& t : targets) t = id(rng);
  gpt.zero_grad();
  {
    optim::CaptureFanOut capture(optimizers, 0);
    gpt.forward_backward(tokens.data(), targets.data(), c.train.micro_batch_seqs, capture.sink());
  }
  for (auto& o : optimizers) o->step(0, 1.0);
  gpt.weights_changed();
  if (state_bytes)
    for (const auto& o : optimizers) state_bytes->push_back(o->state_bytes());
  return heap_in_use() - before;
}

// The CPU plan against what a run really holds: the heap's growth over building the
// model and optimizers and running a step (after which every lazily sized buffer exists)
// must equal the plan's lines that are held for the whole run (all but the transient
// scratch), up to the bookkeeping of the objects themselves.
TEST(MemoryPlan, CpuPlanIsWhatARunHolds) {
  auto config_for = [](const char* matrix) {
    config::RunConfig c = small_run(matrix);
    c.model.vocab_size = 2000;
    c.model.padded_vocab_size = 2048;
    c.model.d_model = 128;
    c.model.head_dim = 64;
    c.model.seq_len = 64;
    c.train.micro_batch_seqs = 4;
    c.train.batch_tokens = 4 * 64;
    // Newton-Muon preconditions (and holds its preconditioned gradient) from its first
    // refresh on: make that the measured step.
    if (auto* nm = std::get_if<config::NewtonMuonSettings>(&c.optimizers[1].settings)) nm->refresh_every = 1;
    return c;
  };
  // Warm up once: OpenMP's thread pool, OpenBLAS and other one-time allocations.
  bytes_held_by_a_step(config_for("newton_muon"), 0);
  for (const char* matrix : {"muon", "newton_muon", "rmnp"}) {
    SCOPED_TRACE(matrix);
    const config::RunConfig c = config_for(matrix);
    const size_t before = heap_in_use();
    std::vector<size_t> state;
    const size_t held = bytes_held_by_a_step(c, before, &state);

    const train::MemoryPlan plan = train::plan_memory(c, Device::cpu, DType::f32, /*with_optimizer_state=*/true);
    size_t planned = 0;
    for (const auto& item : plan.items)
      if (!item.transient) planned += item.bytes;
    // The state estimate is the optimizers' own count in one process.
    size_t state_sum = 0;
    for (size_t b : state) state_sum += b;
    EXPECT_EQ(find_item(plan, "optimizer state")->bytes, state_sum);
    // Slack: the optimizer and model objects, vector headers, malloc's per-chunk
    // bookkeeping and 64-byte rounding (about 2,000 allocations x 16-64 B). The smallest
    // line that could be missing (the work buffers, 128 KiB) is larger.
    const size_t slack = 96 << 10;
    std::printf("%s: heap held %zu B, plan (held lines) %zu B, total %zu B\n", matrix, held, planned, plan.total());
    EXPECT_LE(held, planned + slack);
    EXPECT_GE(held + slack, planned);
    // Negative control: without its work buffers (or its state) the plan would be caught.
    const train::MemoryItem* work = find_item(plan, "optimizer work buffers");
    if (std::string(matrix) != "rmnp") {
      ASSERT_NE(work, nullptr);
      EXPECT_GT(work->bytes, 2 * slack);
    } else {
      EXPECT_EQ(work, nullptr);  // RMNP updates in place
    }
    EXPECT_GT(state_sum, 2 * slack);
  }
}

TEST(MemoryPlan, HostPlanRefusalNamesTheBytes) {
  train::MemoryPlan plan;
  plan.items.push_back({"parameters (f32, 1.0M)", size_t{3} << 30, false});
  plan.items.push_back({"activations", size_t{1} << 30, false});
  HostMemory host;
  host.available = size_t{5} << 30;
  host.limits = "MemAvailable 5.00 GiB of MemTotal 8.00 GiB";
  EXPECT_NO_THROW(train::check_host_plan_fits(plan, host));
  host.available = size_t{2} << 30;
  try {
    train::check_host_plan_fits(plan, host);
    FAIL() << "no error";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("needs 4.00 GiB (4294967296 bytes) of host memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("only 2.00 GiB (2147483648 bytes) is available (MemAvailable 5.00 GiB"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("parameters (f32, 1.0M)"), std::string::npos) << msg;  // by category
    EXPECT_NE(msg.find("model.n_layer"), std::string::npos) << msg;
  }
}

// The node's memory is shared by every rank on it (mpirun -np 2 on one machine): a plan
// that fits once must also fit as many times as there are processes on the node.
TEST(MemoryPlan, HostPlanCountsEveryProcessOnTheNode) {
  train::MemoryPlan plan;
  plan.items.push_back({"parameters (f32, 1.0M)", size_t{3} << 30, false});
  HostMemory host;
  host.available = size_t{5} << 30;
  host.limits = "MemAvailable 5.00 GiB of MemTotal 8.00 GiB";
  EXPECT_NO_THROW(train::check_host_plan_fits(plan, host, 1));
  try {
    train::check_host_plan_fits(plan, host, 2);
    FAIL() << "no error for 2 x 3 GiB in 5 GiB";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("needs 6.00 GiB (6442450944 bytes) of host memory (3.00 GiB for each of the 2 processes on "
                       "this node)"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("start fewer processes per node"), std::string::npos) << msg;
  }
}

TEST(HostMemory, ParsesProcAndCgroupFiles) {
  const std::string meminfo = "MemTotal:       24680000 kB\nMemFree:  100 kB\nMemAvailable:   12345678 kB\n";
  EXPECT_EQ(parse_kib_field(meminfo, "MemAvailable"), int64_t{12345678} * 1024);
  EXPECT_EQ(parse_kib_field(meminfo, "MemTotal"), int64_t{24680000} * 1024);
  EXPECT_EQ(parse_kib_field(meminfo, "Mem"), -1);  // a prefix is not a key
  EXPECT_EQ(parse_kib_field(meminfo, "SwapTotal"), -1);
  EXPECT_EQ(parse_cgroup_limit("max\n"), -1);
  EXPECT_EQ(parse_cgroup_limit("12884901888\n"), int64_t{12884901888});
  EXPECT_EQ(parse_cgroup_limit(""), -1);
  // This machine: MemAvailable is always there, and nothing is more than it.
  const HostMemory here = query_host_memory();
  EXPECT_NE(here.limits.find("MemAvailable"), std::string::npos) << here.limits;
  EXPECT_GT(here.available, 0u);
  EXPECT_LE(here.available, here.total);
}

TEST(MemoryPlan, Bf16ActivationsAndWeightCopiesOnCuda) {
  config::RunConfig c = small_run("muon");
  const auto& m = c.model;
  const int64_t B = c.train.micro_batch_seqs;
  const size_t f32_act = model::Gpt::plan_activation_bytes(m, Device::cuda, B, DType::f32);
  const size_t bf16_act = model::Gpt::plan_activation_bytes(m, Device::cuda, B, DType::bf16);
  // bf16 halves the activations but keeps rstd/lse/losses/rotary f32, keeps the f32 logit
  // chunk and adds its bf16 twin: smaller, but more than half.
  EXPECT_LT(bf16_act, f32_act);
  EXPECT_GT(bf16_act, f32_act / 2);

  // Weight copies: every block matrix and the head, each 64-byte aligned; the embedding
  // only when it is read in bf16.
  const model::ParamLayout layout(m);
  size_t matrices = 0;
  for (const auto& s : layout.params())
    if (s.is_matrix() && s.name != "embed.weight") matrices += round64(static_cast<size_t>(s.numel) * 2);
  EXPECT_EQ(model::Gpt::plan_weight_copy_bytes(m, Device::cuda, DType::bf16), matrices);
  EXPECT_EQ(model::Gpt::plan_weight_copy_bytes(m, Device::cuda, DType::f32), 0u);
  c.model.embedding_dtype = "bf16";
  const size_t table = round64(static_cast<size_t>(m.padded_vocab_size * m.d_model) * 2);
  EXPECT_EQ(model::Gpt::plan_weight_copy_bytes(c.model, Device::cuda, DType::bf16), matrices + table);
  EXPECT_EQ(model::Gpt::plan_weight_copy_bytes(c.model, Device::cuda, DType::f32), table);

  // SPEEDRUN_GEMM_EPILOGUE=fused adds a bf16 copy of every trunk bias (cuBLASLt's bias
  // epilogue takes the output's type), not of the head's, whose f32 logits take the f32 bias.
  // (The choices are CUDA's: the CPU-only build, such as the sanitizer stage's, has no kernels/ops.)
#if SPEEDRUN_HAVE_CUDA
  {
    size_t biases = 0;
    for (const auto& s : layout.params())
      if (!s.is_matrix() && s.name.ends_with(".bias") && s.name != "proj.bias")
        biases += round64(static_cast<size_t>(s.numel) * 2);
    ASSERT_GT(biases, 0u);
    const cuda::GemmEpilogue previous = cuda::set_gemm_epilogue(cuda::GemmEpilogue::fused);
    const size_t fused = model::Gpt::plan_weight_copy_bytes(c.model, Device::cuda, DType::bf16);
    const size_t fused_f32 = model::Gpt::plan_weight_copy_bytes(c.model, Device::cuda, DType::f32);
    const train::MemoryPlan fused_plan = train::plan_memory(c, Device::cuda, DType::bf16, true);
    cuda::set_gemm_epilogue(previous);
    EXPECT_EQ(fused, matrices + table + biases);
    EXPECT_EQ(fused_f32, table);  // f32 layers take the f32 bias in the epilogue: no copies
    EXPECT_EQ(find_item(fused_plan, "bf16 weight copies")->bytes, matrices + table + biases);

    // With the fused head too (bf16 logits), the head's bias gets its copy as well, so the
    // bf16 epilogue adds it (no bias_add pass over the logits). The legacy head is the
    // negative control above (same epilogue choice, no head-bias copy).
    const size_t head_bias = round64(static_cast<size_t>(m.padded_vocab_size) * 2);
    const cuda::GemmEpilogue prev_epilogue = cuda::set_gemm_epilogue(cuda::GemmEpilogue::fused);
    const cuda::HeadKernel prev_head = cuda::set_head_kernel(cuda::HeadKernel::fused);
    const size_t fused_head = model::Gpt::plan_weight_copy_bytes(c.model, Device::cuda, DType::bf16);
    cuda::set_head_kernel(cuda::HeadKernel::legacy);
    const size_t legacy_head = model::Gpt::plan_weight_copy_bytes(c.model, Device::cuda, DType::bf16);
    cuda::set_head_kernel(prev_head);
    cuda::set_gemm_epilogue(prev_epilogue);
    EXPECT_EQ(legacy_head, matrices + table + biases);
    EXPECT_EQ(fused_head, matrices + table + biases + head_bias);
  }
#endif

  const train::MemoryPlan plan = train::plan_memory(c, Device::cuda, DType::bf16, true);
  EXPECT_EQ(find_item(plan, "activations")->bytes, bf16_act);
  EXPECT_EQ(find_item(plan, "bf16 weight copies")->bytes, matrices + table);
  EXPECT_EQ(find_item(plan, "cuBLASLt workspace")->bytes, size_t{32} << 20);
  ASSERT_NE(find_item(plan, "kernel scratch"), nullptr);
  EXPECT_TRUE(find_item(plan, "kernel scratch")->estimate);
  EXPECT_TRUE(find_item(plan, "optimizer state")->estimate);
  const std::string text = plan.to_string();
  EXPECT_NE(text.find("total"), std::string::npos) << text;
  EXPECT_NE(text.find("(estimate)"), std::string::npos) << text;
}

TEST(MemoryPlan, OptimizerStateEstimate) {
  const config::RunConfig c = small_run("muon");
  const model::ParamLayout layout(c.model);
  int64_t block_matrices = 0, total = layout.total_numel();
  for (const auto& s : layout.params())
    if (s.name.rfind("blocks.", 0) == 0 && s.is_matrix()) block_matrices += s.numel;
  // AdamW: m and v for everything not a block matrix; Muon: one momentum buffer.
  const size_t want = static_cast<size_t>(2 * (total - block_matrices) + block_matrices) * 4;
  EXPECT_EQ(train::estimate_optimizer_state_bytes(c), want);

  // Newton-Muon adds 3 n^2 floats per layer, capture point and block.
  const config::RunConfig nm = small_run("newton_muon");
  const auto& m = nm.model;
  const int64_t d = m.d_model, a = m.attn_dim(), blocks = 4, f = m.mlp_hidden() / blocks;
  const size_t stats = static_cast<size_t>(m.n_layer * 3 * (d * d + a * a + d * d + blocks * f * f)) * 4;
  EXPECT_EQ(train::estimate_optimizer_state_bytes(nm), want + stats);
}

TEST(MemoryPlan, DoesNotFitSaysHowMuch) {
  train::MemoryPlan plan;
  plan.items.push_back({"activations", size_t{3} << 30, false});
  EXPECT_NO_THROW(train::check_plan_fits(plan, size_t{4} << 30, size_t{8} << 30));
  try {
    train::check_plan_fits(plan, size_t{1} << 30, size_t{8} << 30);
    FAIL() << "no error";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("needs 3.00 GiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("only 1.00 GiB of 8.00 GiB is free"), std::string::npos) << msg;
    EXPECT_NE(msg.find("train.micro_batch_seqs"), std::string::npos) << msg;
  }
}

// Track 3 on one device with bf16 activations: the figure docs/cuda.md quotes. Printed,
// and bounded loosely so that an accidental f32 or doubled buffer shows.
TEST(MemoryPlan, Track3Bf16Figure) {
  config::RunConfig c = small_run("muon");
  c.model = config::ModelConfig{};
  c.train.micro_batch_seqs = 64;
  c.train.batch_tokens = 524288;
  const train::MemoryPlan plan = train::plan_memory(c, Device::cuda, DType::bf16, true);
  std::printf("Track 3, 64 x 1024 tokens per micro-batch, bf16 activations:\n%s", plan.to_string().c_str());
  const double gib = static_cast<double>(plan.total()) / double(1ull << 30);
  EXPECT_GT(gib, 15.0);
  EXPECT_LT(gib, 60.0);
}

// The flash attention backward takes delta (B H T floats) and an fp32 dQ accumulator
// (B T H D floats) from cuda::workspace(); the plan counts them when those kernels are
// selected. Track 3 at 64 x 1024 tokens: delta 1.5 MiB, dQ 192 MiB -> 194 MiB (MiB steps);
// without flash the embedding sort's 2.75 MiB is the largest user -> 3 MiB.
TEST(MemoryPlan, CountsFlashAttentionScratch) {
  const config::ModelConfig track3{};
  constexpr size_t kMiB = size_t{1} << 20;
  EXPECT_EQ(train::estimate_kernel_scratch_bytes(track3, 64, false), 3 * kMiB);
  EXPECT_EQ(train::estimate_kernel_scratch_bytes(track3, 64, true), 194 * kMiB);
  config::RunConfig c = small_run("muon");
  c.model = track3;
  c.train.micro_batch_seqs = 64;
  c.train.batch_tokens = 524288;
  auto scratch = [&](DType act) {
    for (const train::MemoryItem& i : train::plan_memory(c, Device::cuda, act, false).items) {
      if (i.what.rfind("kernel scratch", 0) == 0) return i.bytes;
    }
    ADD_FAILURE() << "no kernel scratch line";
    return size_t{0};
  };
#if SPEEDRUN_HAVE_CUDA
  // The kernels' own count (host arithmetic, no device needed) is what the estimate rounds up.
  const size_t ws = cuda::attention_flash_backward_workspace_bytes(64, track3.seq_len, track3.n_head,
                                                                   track3.head_dim);
  EXPECT_GE(train::estimate_kernel_scratch_bytes(track3, 64, true), ws);
  EXPECT_LT(train::estimate_kernel_scratch_bytes(track3, 64, true) - ws, kMiB);
  const cuda::AttentionKernel previous = cuda::set_attention_kernel(cuda::AttentionKernel::flash);
  EXPECT_TRUE(train::flash_attention_selected());
  EXPECT_EQ(scratch(DType::bf16), 194 * kMiB);
  EXPECT_EQ(scratch(DType::f32), 3 * kMiB);  // f32 attention never runs the flash kernels
  cuda::set_attention_kernel(cuda::AttentionKernel::tensor_core);
  EXPECT_FALSE(train::flash_attention_selected());
  EXPECT_EQ(scratch(DType::bf16), 3 * kMiB);
  cuda::set_attention_kernel(previous);
#else
  EXPECT_FALSE(train::flash_attention_selected());
  EXPECT_EQ(scratch(DType::bf16), 3 * kMiB);
#endif
}

TEST(Precision, ResolvesAndRefusesBf16OnCpu) {
  EXPECT_EQ(model::resolve_activation_dtype("auto", Device::cuda), DType::bf16);
  EXPECT_EQ(model::resolve_activation_dtype("auto", Device::cpu), DType::f32);
  EXPECT_EQ(model::resolve_activation_dtype("f32", Device::cuda), DType::f32);
  EXPECT_EQ(model::resolve_activation_dtype("bf16", Device::cuda), DType::bf16);
  try {
    model::resolve_activation_dtype("bf16", Device::cpu);
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("train.activation_dtype = \"bf16\""), std::string::npos) << e.what();
  }
  config::ModelConfig m = small_model();
  m.embedding_dtype = "bf16";
  EXPECT_EQ(model::resolve_embedding_dtype(m, Device::cuda), DType::bf16);
  try {
    model::resolve_embedding_dtype(m, Device::cpu);
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("model.embedding_dtype = \"bf16\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(model::Gpt(m, Device::cpu, 1), UserError);
  EXPECT_THROW(model::Gpt(small_model(), Device::cpu, 1, DType::bf16), UserError);
}

// The storage choices of model::Gpt::Storage (SPEEDRUN_HEAD=fused, SPEEDRUN_RELU2=recompute)
// save exactly what they say, at Track 3's 64 x 1024 tokens with bf16 activations, and the
// plan's activations line names them: the fused head drops the f32 logit chunk and its bf16
// twin for one bf16 chunk (chunk_rows x V x 4 bytes less: 2,668 x 50,304 x 4 = 512 MiB less);
// recompute drops g, one (tokens x 4d) bf16 activation per layer (12 x 65,536 x 3,072 x 2 =
// 4.5 GiB less). The model allocates what the plan counts (CudaModel.AllocatesWhatThePlanSays).
TEST(MemoryPlan, HeadAndRelu2StorageChoices) {
  config::RunConfig c = small_run("muon");
  c.model = config::ModelConfig{};
  c.train.micro_batch_seqs = 64;
  c.train.batch_tokens = 524288;
  const auto& m = c.model;
  const int64_t B = 64, N = B * m.seq_len;
  auto activations = [&] { return model::Gpt::plan_activation_bytes(m, Device::cuda, B, DType::bf16); };
  auto line = [&] {
    for (const train::MemoryItem& i : train::plan_memory(c, Device::cuda, DType::bf16, false).items)
      if (i.what.rfind("activations", 0) == 0) return i.what;
    return std::string("no activations line");
  };
  // The CPU's arena never changes with the choices (its head stays bitwise what it was).
  const size_t cpu_bytes = model::Gpt::plan_activation_bytes(m, Device::cpu, 1, DType::f32);
#if SPEEDRUN_HAVE_CUDA
  const cuda::HeadKernel head = cuda::set_head_kernel(cuda::HeadKernel::legacy);
  const cuda::Relu2Storage relu2 = cuda::set_relu2_storage(cuda::Relu2Storage::legacy);
  const size_t legacy = activations();
  const size_t f32_legacy = model::Gpt::plan_activation_bytes(m, Device::cuda, B, DType::f32);
  EXPECT_EQ(line().find("fused"), std::string::npos) << line();
  cuda::set_head_kernel(cuda::HeadKernel::fused);
  const size_t fused = activations();
  const int64_t chunk = model::Gpt::head_chunk_rows(m, Device::cuda, B);
  EXPECT_EQ(legacy - fused, static_cast<size_t>(chunk * m.padded_vocab_size) * 4);
  EXPECT_NE(line().find("fused head"), std::string::npos) << line();
  cuda::set_relu2_storage(cuda::Relu2Storage::recompute);
  const size_t both = activations();
  EXPECT_EQ(fused - both, static_cast<size_t>(m.n_layer * N * m.mlp_hidden()) * 2);
  EXPECT_NE(line().find("fused head, relu^2 recomputed"), std::string::npos) << line();
  // f32 activations: the head choice does not apply (their logits are f32 anyway); recompute does.
  cuda::set_relu2_storage(cuda::Relu2Storage::legacy);
  EXPECT_EQ(model::Gpt::plan_activation_bytes(m, Device::cuda, B, DType::f32), f32_legacy);
  cuda::set_relu2_storage(cuda::Relu2Storage::recompute);
  EXPECT_EQ(f32_legacy - model::Gpt::plan_activation_bytes(m, Device::cuda, B, DType::f32),
            static_cast<size_t>(m.n_layer * N * m.mlp_hidden()) * 4);
  EXPECT_EQ(model::Gpt::plan_activation_bytes(m, Device::cpu, 1, DType::f32), cpu_bytes);
  std::printf("Track 3 bf16 activations, 64 x 1024 tokens: legacy %.2f GiB, fused head %.2f GiB, "
              "+ relu^2 recomputed %.2f GiB\n",
              legacy / double(1ull << 30), fused / double(1ull << 30), both / double(1ull << 30));
  cuda::set_head_kernel(head);
  cuda::set_relu2_storage(relu2);
#else
  EXPECT_EQ(line().find("fused"), std::string::npos) << line();
  EXPECT_FALSE(model::Gpt::storage_choice(Device::cuda, DType::bf16).fused_head);
  EXPECT_GT(cpu_bytes, 0u);
  (void)N;
#endif
}

}  // namespace
}  // namespace speedrun::test

namespace speedrun::test {
namespace {

// The checkpoint line of the plan (train/communication_plan.h) against what a checkpoint
// gathers: every optimizer's exported state (optim::StateTensor), after a step, in one
// process, f32 and i64 (Newton-Muon's counters) alike.
TEST(MemoryPlan, CheckpointGatherIsTheExportedState) {
  for (const char* matrix : {"muon", "newton_muon", "rmnp"}) {
    SCOPED_TRACE(matrix);
    config::RunConfig c = small_run(matrix);
    model::Gpt gpt(c.model, Device::cpu, c.train.micro_batch_seqs);
    gpt.init_parameters(static_cast<uint64_t>(test_seed()));
    const auto comm = dist::make_local_communicator();
    auto optimizers = optim::build_optimizers(c.optimizers, gpt, {comm.get()});
    const int64_t n = c.train.micro_batch_seqs * c.model.seq_len;
    std::vector<int32_t> tokens(static_cast<size_t>(n), 7), targets(tokens.size(), 11);
    {
      optim::CaptureFanOut capture(optimizers, 0);
      gpt.forward_backward(tokens.data(), targets.data(), c.train.micro_batch_seqs, capture.sink());
    }
    size_t f32 = 0, i64 = 0;
    for (auto& o : optimizers) {
      o->step(0, 1.0);
      EXPECT_EQ(o->communication_bytes(), 0u);  // one process: no collective buffers
      for (const optim::StateTensor& t : o->export_state()) {
        f32 += t.f32.size() * sizeof(float);
        i64 += t.i64.size() * sizeof(int64_t);
      }
    }
    train::MemoryPlan plan = train::plan_memory(c, Device::cpu, DType::f32, true);
    train::add_communication_items(plan, c, 1, Device::cpu);
    const train::MemoryItem* gather = find_item(plan, "checkpoint");
    ASSERT_NE(gather, nullptr);
    EXPECT_TRUE(gather->transient);
    EXPECT_EQ(find_item(plan, "gradient reduction"), nullptr);  // one process
    std::printf("%s: exported %zu f32 + %zu i64 bytes, planned %zu\n", matrix, f32, i64, gather->bytes);
    EXPECT_EQ(gather->bytes, f32 + i64);
    // With several ranks the reduction buffers appear (their exact size is checked under mpirun:
    // tests/python/test_mpi_overlap.py).
    train::MemoryPlan two = train::plan_memory(c, Device::cpu, DType::f32, true);
    train::add_communication_items(two, c, 2, Device::cpu);
    ASSERT_NE(find_item(two, "gradient reduction"), nullptr);
    EXPECT_GT(find_item(two, "gradient reduction")->bytes, static_cast<size_t>(gpt.layout().total_numel()) * 4);
  }
}

}  // namespace
}  // namespace speedrun::test
