// model::initialize_parameters under both `model.init` rules: the distributions each
// rule states (model/param_layout.h; ../shared/specs/model-track3.md, "Parameters"),
// reproducibility across thread counts, and track3's values unchanged by torch_default.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "model/param_layout.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

config::ModelConfig small_model(const std::string& init) {
  config::ModelConfig m;
  m.n_layer = 2;
  m.d_model = 96;
  m.n_head = 2;
  m.head_dim = 48;
  m.mlp_ratio = 4;
  m.vocab_size = 250;
  m.padded_vocab_size = 256;
  m.init = init;
  return m;
}

std::vector<float> init_params(const model::ParamLayout& layout, uint64_t seed, int threads) {
  std::vector<float> flat(static_cast<size_t>(layout.total_numel()), -7.0f);
  with_threads(threads, [&] { model::initialize_parameters(layout, seed, flat.data()); });
  return flat;
}

std::vector<double> values_of(const std::vector<float>& flat, const model::ParamSpec& s) {
  return std::vector<double>(flat.begin() + s.offset, flat.begin() + s.offset + s.numel);
}

// Kolmogorov-Smirnov distance of `x` from U(-bound, bound).
double ks_distance_from_uniform(std::vector<double> x, double bound) {
  std::sort(x.begin(), x.end());
  const double n = static_cast<double>(x.size());
  double d = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double cdf = std::clamp((x[i] + bound) / (2 * bound), 0.0, 1.0);
    d = std::max({d, std::fabs(cdf - i / n), std::fabs((i + 1) / n - cdf)});
  }
  return d;
}

// Checks that `x` is a sample of U(-bound, bound), with bounds each exceeded by chance
// with probability < 1e-5 per parameter (the test checks ~20 parameters per run):
// - every |x| <= bound (exact: the values are float(bound * u), |u| <= 1);
// - mean within 5 standard errors, sd(mean) = bound / sqrt(3n);
// - mean(x^2) within 5 standard errors of bound^2/3, sd(x^2) = bound^2 sqrt(4/45);
// - KS distance < 2.5/sqrt(n) (P(D > c/sqrt(n)) <= 2 exp(-2c^2) = 7.5e-6): this is what
//   tells a uniform from a normal of the same variance (N(0, 0.33/fan_in), track3's rule,
//   has variance 0.99 bound^2/3), which the first moments cannot.
// Returns "" or what failed.
std::string uniform_mismatch(const std::vector<double>& x, double bound) {
  const double n = static_cast<double>(x.size());
  double sum = 0, sum2 = 0, max_abs = 0;
  for (double v : x) {
    sum += v;
    sum2 += v * v;
    max_abs = std::max(max_abs, std::fabs(v));
  }
  const double mean = sum / n, second = sum2 / n, b2 = bound * bound;
  std::string out;
  if (max_abs > bound) out += " max|x| " + std::to_string(max_abs) + " > bound " + std::to_string(bound) + ";";
  if (std::fabs(mean) > 5 * bound / std::sqrt(3 * n)) out += " mean " + std::to_string(mean) + ";";
  if (std::fabs(second - b2 / 3) > 5 * b2 * std::sqrt(4.0 / 45.0 / n))
    out += " mean(x^2)/bound^2 " + std::to_string(second / b2) + " (want 1/3);";
  const double ks = ks_distance_from_uniform(x, bound);
  if (ks > 2.5 / std::sqrt(n)) out += " KS distance " + std::to_string(ks) + " > " + std::to_string(2.5 / std::sqrt(n)) + ";";
  return out;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

class ParamInit : public OpsTest {};

TEST_F(ParamInit, DefaultRuleIsTrack3) { EXPECT_EQ(config::ModelConfig{}.init, "track3"); }

TEST_F(ParamInit, TorchDefaultIsTorchLinearDefaultWithProjZeroed) {
  const config::ModelConfig m = small_model("torch_default");
  const model::ParamLayout layout(m);
  const std::vector<float> flat = init_params(layout, seed_, 2);
  int uniform_params = 0, uniform_biases = 0;
  for (const model::ParamSpec& s : layout.params()) {
    SCOPED_TRACE(s.name);
    const std::vector<double> x = values_of(flat, s);
    if (contains(s.name, "proj")) {
      // attn.proj, mlp.proj and the head ("proj"), weight and bias.
      EXPECT_EQ(std::count(x.begin(), x.end(), 0.0), s.numel);
    } else if (contains(s.name, "gains")) {
      EXPECT_EQ(std::count(x.begin(), x.end(), 1.0), s.numel);
    } else if (s.name == "embed.weight") {
      // N(0, 1): mean and variance within 5 standard errors (sd(x^2) = sqrt(2)).
      double sum = 0, sum2 = 0;
      for (double v : x) sum += v, sum2 += v * v;
      const double n = static_cast<double>(x.size());
      EXPECT_LT(std::fabs(sum / n), 5 / std::sqrt(n));
      EXPECT_LT(std::fabs(sum2 / n - 1), 5 * std::sqrt(2 / n));
    } else {
      // q, k, v, mlp.fc weights and biases: fan_in is d_model for every one of them.
      ASSERT_EQ(s.fan_in, m.d_model);
      const double bound = static_cast<double>(static_cast<float>(1.0 / std::sqrt(static_cast<double>(m.d_model))));
      EXPECT_EQ(uniform_mismatch(x, bound), "");
      EXPECT_EQ(std::count(x.begin(), x.end(), 0.0), 0) << "a bias or weight left at zero";
      ++uniform_params;
      if (s.shape.size() == 1) ++uniform_biases;
    }
  }
  EXPECT_EQ(uniform_params, 2 * 4 * 2);  // 2 layers x (q, k, v, fc) x (weight, bias)
  EXPECT_EQ(uniform_biases, 2 * 4);
}

// Negative control: the uniform check rejects track3's N(0, 0.33/fan_in) weights, whose
// variance is within 1% of the uniform's.
TEST_F(ParamInit, UniformCheckRejectsTrack3Normal) {
  const model::ParamLayout layout(small_model("track3"));
  const std::vector<float> flat = init_params(layout, seed_, 2);
  const model::ParamSpec& q = layout.find("blocks.0.attn.q.weight");
  const double bound = 1.0 / std::sqrt(static_cast<double>(q.fan_in));
  const std::string mismatch = uniform_mismatch(values_of(flat, q), bound);
  EXPECT_TRUE(contains(mismatch, "KS distance")) << mismatch;
  EXPECT_TRUE(contains(mismatch, "max|x|")) << mismatch;
}

TEST_F(ParamInit, Track3IsTheSpecsInit) {
  const config::ModelConfig m = small_model("track3");
  const model::ParamLayout layout(m);
  const std::vector<float> flat = init_params(layout, seed_, 2);
  for (const model::ParamSpec& s : layout.params()) {
    SCOPED_TRACE(s.name);
    const std::vector<double> x = values_of(flat, s);
    if (contains(s.name, "gains")) {
      EXPECT_EQ(std::count(x.begin(), x.end(), 1.0), s.numel);
    } else if (contains(s.name, "proj") || s.shape.size() == 1) {
      EXPECT_EQ(std::count(x.begin(), x.end(), 0.0), s.numel);
    } else {
      const double var = s.name == "embed.weight" ? 1.0 : 0.33 / static_cast<double>(m.d_model);
      double sum = 0, sum2 = 0;
      for (double v : x) sum += v, sum2 += v * v;
      const double n = static_cast<double>(x.size());
      EXPECT_LT(std::fabs(sum / n), 5 * std::sqrt(var / n));
      EXPECT_LT(std::fabs(sum2 / n - var), 5 * var * std::sqrt(2 / n));
    }
  }
}

// Both rules are bitwise the same on 1 and 2 threads, and share the embedding (same
// counter stream): only the Linear parameters differ.
TEST_F(ParamInit, BitwiseReproducibleAcrossThreads) {
  for (const char* rule : {"track3", "torch_default"}) {
    SCOPED_TRACE(rule);
    const model::ParamLayout layout(small_model(rule));
    expect_bitwise_equal("1 vs 2 threads", init_params(layout, seed_, 1), init_params(layout, seed_, 2));
  }
  const model::ParamLayout a(small_model("track3")), b(small_model("torch_default"));
  ASSERT_EQ(a.total_numel(), b.total_numel());
  const std::vector<float> fa = init_params(a, seed_, 2), fb = init_params(b, seed_, 2);
  const model::ParamSpec& e = a.find("embed.weight");
  expect_bitwise_equal("embedding", std::vector<float>(fa.begin() + e.offset, fa.begin() + e.offset + e.numel),
                       std::vector<float>(fb.begin() + e.offset, fb.begin() + e.offset + e.numel));
}

// track3's values are those the code gave before `model.init` existed (commit a89d1b7):
// FNV-1a 64 over the f32 bytes of every parameter in layout order, for the model of
// tests/python/configs/reference-small.json (2 layers, d 128, 2 heads x 64, vocab 50304)
// at seed 1234, computed from that commit's speedrun_reference_dump init/*.npy.
TEST_F(ParamInit, Track3ValuesUnchanged) {
  config::ModelConfig m;
  m.n_layer = 2;
  m.d_model = 128;
  m.n_head = 2;
  m.head_dim = 64;
  const model::ParamLayout layout(m);
  const std::vector<float> flat = init_params(layout, 1234, 2);
  uint64_t h = 0xcbf29ce484222325ull;
  size_t bytes = 0;
  for (const model::ParamSpec& s : layout.params()) {
    const auto* p = reinterpret_cast<const unsigned char*>(flat.data() + s.offset);
    for (size_t i = 0; i < static_cast<size_t>(s.numel) * sizeof(float); ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    bytes += static_cast<size_t>(s.numel) * sizeof(float);
  }
  EXPECT_EQ(layout.params().size(), 33u);
  EXPECT_EQ(bytes, 53297664u);
  EXPECT_EQ(h, 0x85b773a3cd547209ull);
}

// The fused q/k/v products (ops::linear_forward_qkv, SPEEDRUN_GEMM_EPILOGUE=fused) read an
// attention layer's q, k and v weights, biases and gradients as one strided batch: each of
// the three must lie at one positive stride from the previous in the flat buffer (the bf16
// copies are carved in the same order). Checked for a multiple-of-16 and an odd shape (whose
// views are padded to 16 floats); a reordered layout would make the model fall back to three
// products without failing anything else.
TEST_F(ParamInit, QkvLieAtOneStride) {
  config::ModelConfig odd = small_model("track3");
  odd.d_model = 24;
  odd.n_head = 3;
  odd.head_dim = 6;  // hd = 18: 18 x 24 weights, 18-float biases, both padded
  for (const config::ModelConfig& m : {small_model("track3"), odd}) {
    const model::ParamLayout layout(m);
    for (int64_t l = 0; l < m.n_layer; ++l) {
      for (const char* kind : {"weight", "bias"}) {
        auto offset = [&](const char* which) {
          return layout.find("blocks." + std::to_string(l) + ".attn." + which + "." + kind).offset;
        };
        const int64_t step = offset("k") - offset("q");
        EXPECT_GT(step, 0) << kind;
        EXPECT_EQ(offset("v") - offset("k"), step) << "layer " << l << " " << kind;
      }
    }
  }
}

}  // namespace
}  // namespace speedrun::test
