// model.arch record26 (model/record26.h): the registry, the parameter layout and init, the
// window schedule, document isolation, and what the CPU-only model refuses. Its forward,
// every gradient and optimizer steps are compared with a float64 PyTorch reference in
// tests/python/test_reference_record26.py.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "model/record26.h"
#include "model/registry.h"
#include "optim/capture_fan_out.h"
#include "optim/optimizer.h"
#include "record26_test_config.h"
#include "test_support.h"
#include "train/memory_plan.h"

namespace speedrun::test {
namespace {

TEST(Record26, RegistryMakesTheArchitectureTheConfigNames) {
  const config::ModelConfig m = tiny_record26();
  auto model = model::make_model(m, Device::cpu, 1);
  EXPECT_NE(dynamic_cast<model::Record26*>(model.get()), nullptr);
  config::ModelConfig t = m;
  t.arch = "track3";
  t.n_layer = 2;
  auto track3 = model::make_model(t, Device::cpu, 1);
  EXPECT_EQ(dynamic_cast<model::Record26*>(track3.get()), nullptr);
  EXPECT_EQ(model.get()->layout().total_numel(), model::ParamLayout(m).total_numel());
  EXPECT_EQ(model->activation_bytes(), model::plan_activation_bytes(m, Device::cpu, 1, DType::f32));
}

TEST(Record26, UpstreamLayoutAtFullSize) {
  config::ModelConfig m;  // upstream's shapes, nothing allocated
  m.arch = "record26";
  const model::ParamLayout layout(m);
  std::set<std::string> names;
  for (const auto& p : layout.params()) names.insert(p.name);
  EXPECT_TRUE(names.count("embed.weight") && names.count("value_embeds.2.weight") && names.count("lm_head.weight"));
  EXPECT_TRUE(names.count("blocks.6.attn.qkv_w") && names.count("blocks.8.attn.c_proj.weight"));
  EXPECT_FALSE(names.count("blocks.7.attn.qkv_w") || names.count("blocks.7.attn.c_proj.weight"));  // no attention
  EXPECT_TRUE(names.count("blocks.7.mlp.c_fc.weight") && names.count("blocks.7.mlp.c_proj.weight"));
  EXPECT_EQ(layout.find("blocks.0.attn.qkv_w").shape, (std::vector<int64_t>{3, 768, 768}));
  EXPECT_EQ(layout.find("blocks.0.mlp.c_fc.weight").shape, (std::vector<int64_t>{3072, 768}));
  EXPECT_EQ(layout.find("scalars").shape, (std::vector<int64_t>{64}));  // 12 + 24 + 24 + 4 padding
  // 4 tables of 50304 x 768, 11 attention and 12 MLP blocks, the head, the scalars.
  int64_t numel = 0;
  for (const auto& p : layout.params()) numel += p.numel;
  EXPECT_EQ(numel, 5 * 50304 * 768 + 11 * 4 * 768 * 768 + 12 * 2 * 3072 * 768 + 64);
  // Value embeddings feed layers 0-2 and 9-11 (tables 0, 1, 2 each twice).
  std::vector<int64_t> ve;
  for (int64_t l = 0; l < 12; ++l) ve.push_back(model::Record26::value_embed_of(m, l));
  EXPECT_EQ(ve, (std::vector<int64_t>{0, 1, 2, -1, -1, -1, -1, -1, -1, 0, 1, 2}));
}

TEST(Record26, InitializationFollowsTheSpec) {
  const config::ModelConfig m = tiny_record26();
  model::Record26 model(m, Device::cpu, 1);
  model.init_parameters(7);
  const int64_t L = m.n_layer;
  const float* s = model.param("scalars").data<float>();
  ASSERT_EQ(model.param("scalars").numel(), 40);  // 5 * 8 = 40, already a multiple of 8
  for (int64_t l = 0; l < L; ++l) {
    EXPECT_EQ(s[l], 1.0f) << "skip weight " << l;
    EXPECT_EQ(s[L + 2 * l], 1.0f) << "a " << l;
    EXPECT_EQ(s[L + 2 * l + 1], 0.0f) << "b " << l;
    EXPECT_EQ(s[3 * L + 2 * l], 0.5f) << "lambda0 " << l;
    EXPECT_EQ(s[3 * L + 2 * l + 1], 0.5f) << "lambda1 " << l;
  }
  for (const auto& p : model.layout().params()) {
    const Tensor t = model.param(p.name);
    const float* x = t.data<float>();
    double sum = 0, sq = 0, largest = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      sum += x[i];
      sq += double(x[i]) * x[i];
      largest = std::max(largest, std::fabs(double(x[i])));
    }
    const double n = double(t.numel()), mean = sum / n, sd = std::sqrt(sq / n);
    if (p.name.find("c_proj") != std::string::npos || p.name == "lm_head.weight") {
      EXPECT_EQ(largest, 0.0) << p.name;
    } else if (p.name.find("embed") != std::string::npos) {
      EXPECT_NEAR(mean, 0.0, 5 / std::sqrt(n)) << p.name;
      EXPECT_NEAR(sd, 1.0, 5 / std::sqrt(n) + 0.01) << p.name;
    } else if (p.name != "scalars") {
      // Uniform with std 0.5 / sqrt(d): bound sqrt(3) std, rms within 5 standard errors.
      const double std = 0.5 / std::sqrt(double(m.d_model)), bound = std::sqrt(3.0) * std;
      EXPECT_LE(largest, bound * (1 + 1e-7)) << p.name;
      EXPECT_GT(largest, 0.9 * bound) << p.name;
      EXPECT_NEAR(sd / std, 1.0, 5 * std::sqrt(0.8 / n)) << p.name;
    }
  }
}

TEST(Record26, WindowScheduleAsUpstream) {
  config::ModelConfig m;
  m.arch = "record26";
  using model::Record26;
  // Upstream: next_multiple_of_n(1728 * step / 1750, n=128) / 128.
  EXPECT_EQ(Record26::long_window_blocks(m, {0, 1750}), 1);
  EXPECT_EQ(Record26::long_window_blocks(m, {1, 1750}), 1);
  EXPECT_EQ(Record26::long_window_blocks(m, {875, 1750}), 7);  // 864 -> 896
  EXPECT_EQ(Record26::long_window_blocks(m, {1750, 1750}), 14);  // 1728 -> 1792
  // Exact multiples stay: with 27 steps the product is 64 * step.
  EXPECT_EQ(Record26::long_window_blocks(m, {2, 27}), 1);  // 128
  EXPECT_EQ(Record26::long_window_blocks(m, {3, 27}), 2);  // 192 -> 256
  EXPECT_EQ(Record26::long_window_blocks(m, {4, 27}), 2);  // 256
  EXPECT_EQ(Record26::long_window_blocks(m, {5, 27}), 3);  // 320 -> 384
  // Short layers (pattern LSSSLSSLSSSL): half, at least 1.
  EXPECT_EQ(Record26::layer_window_blocks(m, 0, {1750, 1750}), 14);
  EXPECT_EQ(Record26::layer_window_blocks(m, 1, {1750, 1750}), 7);
  EXPECT_EQ(Record26::layer_window_blocks(m, 7, {875, 1750}), 7);
  EXPECT_EQ(Record26::layer_window_blocks(m, 8, {875, 1750}), 3);
  EXPECT_EQ(Record26::layer_window_blocks(m, 1, {0, 1750}), 1);
  EXPECT_THROW(Record26::long_window_blocks(m, {0, 0}), std::invalid_argument);
  EXPECT_THROW(Record26::long_window_blocks(m, {11, 10}), std::invalid_argument);
}

// Attention never crosses a document boundary, and every other part of the model works per
// token: the logits of a document do not depend on the tokens of the documents before it.
TEST(Record26, DocumentsAreIsolated) {
  const config::ModelConfig m = tiny_record26();
  model::Record26 model(m, Device::cpu, 2);
  model.init_parameters(3);
  // Noise on every parameter, so that the zero-initialized head and projections do not make
  // every logit equal.
  std::mt19937_64 rng(test_seed());
  std::normal_distribution<double> noise(0.0, 0.05);
  for (size_t i = 0; i < model.layout().params().size(); ++i) {
    float* p = model.param(i).data<float>();
    for (int64_t k = 0; k < model.param(i).numel(); ++k) p[k] += static_cast<float>(noise(rng));
  }
  const int64_t T = m.seq_len, V = m.padded_vocab_size, cut = 17;
  std::uniform_int_distribution<int32_t> tok(0, 95);
  std::vector<int32_t> a(2 * T);
  for (auto& x : a) x = tok(rng);
  a[cut] = a[T + cut] = static_cast<int32_t>(m.doc_separator);  // a document starts at `cut` in each row
  std::vector<int32_t> b = a;
  for (int64_t t = 0; t < cut; ++t) b[t] = b[T + t] = tok(rng);  // other first documents
  std::vector<float> la(2 * T * V), lb(2 * T * V);
  model.forward_logits(a.data(), 2, la.data(), {5, 10});
  model.forward_logits(b.data(), 2, lb.data(), {5, 10});
  for (int64_t row = 0; row < 2; ++row) {
    bool before_differs = false;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t v = 0; v < V; ++v) {
        const size_t i = static_cast<size_t>((row * T + t) * V + v);
        if (t >= cut) ASSERT_EQ(la[i], lb[i]) << "row " << row << " position " << t;
        else if (la[i] != lb[i]) before_differs = true;
      }
    EXPECT_TRUE(before_differs) << "negative control: the changed document's logits changed";
  }
  // Without the separator the second part does see the first (the isolation is the mask's).
  std::vector<int32_t> c = a, d = b;
  c[cut] = d[cut] = 5;
  model.forward_logits(c.data(), 1, la.data(), {5, 10});
  model.forward_logits(d.data(), 1, lb.data(), {5, 10});
  bool after_differs = false;
  for (int64_t i = (cut + 1) * V; i < T * V; ++i) after_differs |= la[i] != lb[i];
  EXPECT_TRUE(after_differs);
}

TEST(Record26, LossesAgreeAndUnusedScalarsGetNoGradient) {
  const config::ModelConfig m = tiny_record26();
  model::Record26 model(m, Device::cpu, 1);
  model.init_parameters(11);
  std::mt19937_64 rng(test_seed());
  std::uniform_int_distribution<int32_t> tok(0, 96);
  std::vector<int32_t> x(m.seq_len), y(m.seq_len);
  for (auto& t : x) t = tok(rng);
  for (auto& t : y) t = tok(rng);
  const double eval = model.forward_loss(x.data(), y.data(), 1, {2, 10});
  const double train = model.forward_backward(x.data(), y.data(), 1, nullptr, {2, 10});
  EXPECT_EQ(eval, train);
  EXPECT_NEAR(eval / m.seq_len, std::log(double(m.padded_vocab_size)), 1e-5);  // zero head: uniform logits
  const float* g = model.grad("scalars").data<float>();
  const int64_t L = m.n_layer;
  for (int64_t k = L / 2; k < L; ++k) EXPECT_EQ(g[k], 0.0f) << "unused skip weight " << k;
  EXPECT_EQ(g[3 * L + 14], 0.0f);  // layer 7 has no attention: lambda0, lambda1 unused
  EXPECT_EQ(g[3 * L + 15], 0.0f);
  EXPECT_THROW(model.forward_loss(x.data(), y.data(), 1), std::invalid_argument);  // no run position
}

// CUDA is accepted (the run itself: CudaModel.Record26*); what stays refused is bf16
// activations on the CPU. The plans count without a device: the bf16 model's weight copies
// are the matrices the products read (not the embedding tables or the scalars), and the
// memory plan grows with the ids CUDA keeps on the device.
TEST(Record26, CudaIsAcceptedAndPlanned) {
  const config::ModelConfig m = tiny_record26();
  EXPECT_NO_THROW(model::check_arch_supported(m, Device::cuda));
  EXPECT_THROW(model::Record26(m, Device::cpu, 1, DType::bf16), UserError);
  EXPECT_EQ(model::plan_weight_copy_bytes(m, Device::cuda, DType::f32), 0u);
  const model::ParamLayout layout = model::record26_layout(m);
  size_t matrices = 0;
  for (const model::ParamSpec& spec : layout.params())
    if (spec.name.find("blocks.") == 0 || spec.name == "lm_head.weight") matrices += static_cast<size_t>(spec.numel);
  const size_t copies = model::plan_weight_copy_bytes(m, Device::cuda, DType::bf16);
  EXPECT_GE(copies, 2 * matrices);
  EXPECT_LT(copies, 2 * matrices + 64 * layout.params().size());  // at most alignment padding on top
  EXPECT_GT(model::plan_activation_bytes(m, Device::cuda, 2, DType::f32),
            model::plan_activation_bytes(m, Device::cpu, 2, DType::f32));  // + tokens, targets, documents
  EXPECT_LT(model::plan_activation_bytes(m, Device::cuda, 2, DType::bf16),
            model::plan_activation_bytes(m, Device::cuda, 2, DType::f32));
}

// The attention work FLOPs count (model/flops.h): with no separator and a window covering the
// sequence, causal's (T + 1) / 2 keys per layer; documents and small windows cut it.
TEST(Record26, AttentionKeysPerTokenCountsTheMask) {
  config::ModelConfig m = tiny_record26();
  const int64_t T = m.seq_len, B = 2;
  int64_t attention_layers = 0;
  for (int64_t l = 0; l < m.n_layer; ++l) attention_layers += model::Record26::has_attention(l);
  std::vector<int32_t> tokens(static_cast<size_t>(B * T), 1);
  m.window_pattern = std::string(static_cast<size_t>(m.n_layer), 'L');
  const model::RunPosition end{10, 10};  // the whole window: 40 tokens = 5 blocks of 8 = T
  EXPECT_DOUBLE_EQ(model::Record26::attention_keys_per_token(m, tokens.data(), B, end),
                   static_cast<double>(attention_layers) * (T + 1) / 2.0);
  // One separator in the middle of each row: two documents of 20 tokens each.
  tokens[20] = tokens[T + 20] = static_cast<int32_t>(m.doc_separator);
  EXPECT_DOUBLE_EQ(model::Record26::attention_keys_per_token(m, tokens.data(), B, end),
                   static_cast<double>(attention_layers) * (20 + 1) / 2.0);
  // At step 0 the window is one block of 8: keys 1..8 within the block, so (1 + ... + 8) / 8.
  std::fill(tokens.begin(), tokens.end(), 1);
  EXPECT_DOUBLE_EQ(model::Record26::attention_keys_per_token(m, tokens.data(), B, {0, 10}),
                   static_cast<double>(attention_layers) * 4.5);
}

// Matrix optimizers take qkv_w as three matrices (upstream's Muon orthogonalizes the last two
// dimensions); AdamW takes the scalars.
TEST(Record26, MuonUpdatesQkvAsThreeMatrices) {
  config::RunConfig c;
  c.model = tiny_record26();
  config::OptimizerConfig adam, muon;
  adam.type = "adamw";
  adam.select_settings("adamw");
  adam.params = {"embed.weight", "value_embeds.*", "lm_head.weight", "scalars"};
  adam.lr = 0.01;
  muon.type = "muon";
  muon.select_settings("muon");
  muon.params = {"blocks.*"};
  muon.lr = 0.02;
  c.optimizers = {adam, muon};
  model::Record26 model(c.model, Device::cpu, 1);
  model.init_parameters(5);
  std::mt19937_64 rng(test_seed());
  std::normal_distribution<double> noise(0.0, 1.0);
  float* g = model.grad("blocks.0.attn.qkv_w").data<float>();
  const int64_t n = model.grad("blocks.0.attn.qkv_w").numel();
  for (int64_t i = 0; i < n; ++i) g[i] = static_cast<float>(noise(rng));
  for (int64_t i = 0; i < n / 3; ++i) g[i] *= 100.0f;  // q's gradient much larger than k's and v's
  const std::vector<float> before(model.param("blocks.0.attn.qkv_w").data<float>(),
                                  model.param("blocks.0.attn.qkv_w").data<float>() + n);
  const auto comm = dist::make_local_communicator();
  auto opts = optim::build_optimizers(c.optimizers, model, {comm.get()});
  for (auto& o : opts) o->step(0, 1.0);
  // Each matrix's update is orthogonalized on its own: all three have the same Frobenius norm
  // (~ lr * sqrt(rank)), although q's gradient is 100x larger.
  const float* after = model.param("blocks.0.attn.qkv_w").data<float>();
  double norm[3] = {0, 0, 0};
  for (int64_t i = 0; i < n; ++i) norm[i / (n / 3)] += std::pow(double(after[i]) - before[i], 2);
  for (double& x : norm) x = std::sqrt(x);
  EXPECT_GT(norm[0], 0.0);
  EXPECT_NEAR(norm[1] / norm[0], 1.0, 0.1);
  EXPECT_NEAR(norm[2] / norm[0], 1.0, 0.1);
}

// Newton-Muon and RMNP run on record26 too: Newton-Muon's capture points are the inputs of
// qkv_w (each of its three matrices), attn.c_proj, mlp.c_fc and mlp.c_proj; layer 7 has only
// the MLP's.
TEST(Record26, NewtonMuonAndRmnpRunOnItsMatrices) {
  config::RunConfig c;
  c.model = tiny_record26();
  config::OptimizerConfig adam, nm, rmnp;
  adam.type = "adamw";
  adam.select_settings("adamw");
  adam.params = {"embed.weight", "value_embeds.*", "lm_head.weight", "scalars"};
  adam.lr = 0.01;
  nm.type = "newton_muon";
  nm.select_settings("newton_muon");
  nm.params = {"blocks.*.attn.*", "blocks.*.mlp.c_fc.weight"};
  nm.lr = 0.02;
  std::get<config::NewtonMuonSettings>(nm.settings).refresh_every = 1;
  rmnp.type = "rmnp";
  rmnp.select_settings("rmnp");
  rmnp.params = {"blocks.*.mlp.c_proj.weight"};
  rmnp.lr = 0.01;
  c.optimizers = {adam, nm, rmnp};
  model::Record26 model(c.model, Device::cpu, 1);
  model.init_parameters(9);
  const auto comm = dist::make_local_communicator();
  auto opts = optim::build_optimizers(c.optimizers, model, {comm.get()});
  std::mt19937_64 rng(test_seed());
  std::uniform_int_distribution<int32_t> tok(0, 96);
  std::vector<int32_t> x(c.model.seq_len), y(c.model.seq_len);
  const std::vector<float> before(model.params(), model.params() + model.layout().total_numel());
  // The zero-initialized head and projections pass gradients back one stage per step: the
  // head moves at step 0, the projections at step 1, qkv_w and c_fc at step 2.
  for (int64_t step = 0; step < 3; ++step) {
    for (auto& t : x) t = tok(rng);
    for (auto& t : y) t = tok(rng);
    model.zero_grad();
    optim::CaptureFanOut capture(opts, step);
    ASSERT_NE(capture.sink(), nullptr);
    model.forward_backward(x.data(), y.data(), 1, capture.sink(), {step, 10});
    for (auto& o : opts) o->step(step, 1.0);
  }
  const nlohmann::json m = opts[1]->metrics();
  EXPECT_EQ(m["refreshes"], 3) << m.dump();
  EXPECT_EQ(m["cholesky_failures"], 0) << m.dump();
  for (const char* name : {"blocks.0.attn.qkv_w", "blocks.6.attn.c_proj.weight", "blocks.7.mlp.c_fc.weight",
                           "blocks.7.mlp.c_proj.weight"}) {
    const auto& spec = model.layout().find(name);
    double moved = 0;
    for (int64_t i = 0; i < spec.numel; ++i)
      moved = std::max(moved, std::fabs(double(model.params()[spec.offset + i]) - before[spec.offset + i]));
    EXPECT_GT(moved, 0.0) << name;
  }
}

TEST(Record26, ConfigValidationNamesTheKey) {
  const std::string base = R"({"model": {"arch": "record26", "n_layer": 8, "window_pattern": "LSSL"},
    "data": {"train_glob": "x", "val_glob": "y", "val_tokens": 1024},
    "optimizers": [{"type": "adamw", "params": ["*"], "lr": 0.01}]})";
  try {
    config::run_config_from_json(config::parse_json_text(base, "t.json"), "t.json");
    FAIL() << "accepted a window_pattern of the wrong length";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("model.window_pattern"), std::string::npos) << e.what();
  }
  const std::string odd = R"({"model": {"arch": "record26", "n_layer": 7, "window_pattern": "LSSLSSL"},
    "data": {"train_glob": "x", "val_glob": "y", "val_tokens": 1024},
    "optimizers": [{"type": "adamw", "params": ["*"], "lr": 0.01}]})";
  try {
    config::run_config_from_json(config::parse_json_text(odd, "t.json"), "t.json");
    FAIL() << "accepted 7 layers";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("model.n_layer"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace speedrun::test
