// model/kv_cache.h and model/generate.h: the KV-cache decoder against the full forward
// (Gpt::forward_logits) at every position, greedy decoding against the argmax of a full
// recompute under the same context rule, seed determinism and the sampler's distribution.
//
// Weights are fresh random values in every tensor (the spec's init zeroes every *proj*
// weight, which would make the attention and MLP outputs and the logits vanish and any
// comparison vacuous), scaled so that the logits spread over several units of the cap.
//
// Tolerance: the decoder runs the training forward's ops in f32; only the GEMMs see other
// row counts (one row when decoding, the prompt's rows when prefilling, seq_len in
// forward_logits), and OpenBLAS may sum their products in another order. Each value then
// differs by the rounding of its dot products (gamma_K |x||w|, K <= 128 here, u = 6e-8),
// carried through ~6 dependent ops per block that renormalize (RMSNorm, QK-norm) or are
// Lipschitz near 1 (softmax, the cap): a relative error of ~1e-6 per logit row, measured
// up to ~6e-7. 2e-5, the bound the PyTorch reference tests use for the same fp32 forward,
// leaves margin; a wrong position, a missing cache entry or a wrong token gives errors of
// order 1 (the negative controls measure them).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "config/run_config.h"
#include "model/generate.h"
#include "model/gpt.h"
#include "model/kv_cache.h"
#include "test_support.h"

namespace speedrun {
namespace {

constexpr double kRowTol = 2e-5;

config::ModelConfig small_model(int64_t seq_len) {
  config::ModelConfig m;
  m.vocab_size = 300;
  m.padded_vocab_size = 320;
  m.n_layer = 2;
  m.d_model = 32;
  m.n_head = 2;
  m.head_dim = 16;
  m.seq_len = seq_len;
  return m;
}

class KvCacheTest : public ::testing::Test {
 protected:
  std::mt19937_64 rng_{test::process_seed("KvCache")};

  int greedy_equals_argmax_of_full_recompute();

  // Every parameter random: weights N(0, 1/fan_in) (the embedding and head larger, so the
  // logits use the cap's range), biases N(0, 0.1^2), gains 1 + N(0, 0.2^2).
  void randomize(model::Gpt& g) {
    std::normal_distribution<double> n(0.0, 1.0);
    for (size_t i = 0; i < g.layout().params().size(); ++i) {
      const model::ParamSpec& s = g.layout().params()[i];
      float* p = g.param(i).data<float>();
      const bool gains = s.name.find("gains") != std::string::npos;
      double scale = s.is_matrix() ? 1.0 / std::sqrt(static_cast<double>(s.shape[1])) : 0.1;
      if (s.name == "embed.weight") scale = 1.0;
      if (s.name == "proj.weight") scale = 3.0 / std::sqrt(static_cast<double>(s.shape[1]));
      if (gains) scale = 0.2;
      for (int64_t k = 0; k < s.numel; ++k) p[k] = static_cast<float>((gains ? 1.0 : 0.0) + scale * n(rng_));
    }
    g.weights_changed();
  }
  std::vector<int32_t> tokens(int64_t n, int64_t vocab) {
    std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = d(rng_);
    return t;
  }
  // The full forward's logits of `context` (<= seq_len tokens), padded with token 0 after
  // it (causal: the padding does not change the rows of the context), all seq_len rows.
  static std::vector<float> full_logits(model::Gpt& g, std::vector<int32_t> context) {
    const auto& m = g.config();
    context.resize(static_cast<size_t>(m.seq_len), 0);
    std::vector<float> out(static_cast<size_t>(m.seq_len * m.padded_vocab_size));
    g.forward_logits(context.data(), 1, out.data());
    return out;
  }
  static double row_rel_error(const float* a, const float* b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
      num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      den += double(b[i]) * b[i];
    }
    return std::sqrt(num / den);
  }
};

// The decoder's logits equal forward_logits' at every position, however the context is
// fed: all at once, one token at a time, or a prefill followed by single tokens (across the
// attention's 64-key block boundary).
TEST_F(KvCacheTest, LogitsEqualFullForwardAtEveryPosition) {
  const int64_t T = 80;
  model::Gpt g(small_model(T), Device::cpu, 1);
  randomize(g);
  const int64_t V = g.config().padded_vocab_size;
  const std::vector<int32_t> seq = tokens(T, g.config().vocab_size);
  const std::vector<float> full = full_logits(g, seq);
  model::KvDecoder dec(g);
  double worst = 0, spread = 0;
  for (const int64_t prefill : {int64_t{1}, int64_t{37}, T}) {
    SCOPED_TRACE("prefill " + std::to_string(prefill));
    dec.reset();
    std::vector<float> got(static_cast<size_t>(prefill * V));
    dec.append(std::span<const int32_t>(seq.data(), static_cast<size_t>(prefill)), got.data(), true);
    std::vector<float> row(static_cast<size_t>(V));
    for (int64_t t = prefill; t < T; ++t) {
      dec.append(std::span<const int32_t>(seq.data() + t, 1), row.data());
      got.insert(got.end(), row.begin(), row.end());
    }
    ASSERT_EQ(dec.length(), T);
    for (int64_t t = 0; t < T; ++t) {
      const double e = row_rel_error(got.data() + t * V, full.data() + t * V, V);
      worst = std::max(worst, e);
      ASSERT_LE(e, kRowTol) << "position " << t;
    }
    for (int64_t i = 0; i < T * V; ++i) spread = std::max(spread, std::fabs(double(full[i])));
  }
  std::printf("KV-cache logits vs full forward: worst relative row error %.3g (tolerance %.0e), |logit| up to %.2f\n",
              worst, kRowTol, spread);
  EXPECT_GT(spread, 3.0);  // the logits are not all near zero: the comparison means something
  // A full context: one more token does not fit.
  std::vector<float> row(static_cast<size_t>(V));
  EXPECT_THROW(dec.append(std::span<const int32_t>(seq.data(), 1), row.data()), std::invalid_argument);
}

// Negative controls: what the comparison above would catch. The last position's logits
// after a context whose first token differs, or the logits of the position before, are
// far outside the tolerance (a decoder that lost a cache entry or misplaced a position
// fails the test).
TEST_F(KvCacheTest, NegativeControlsAreFarOutsideTolerance) {
  const int64_t T = 40;
  model::Gpt g(small_model(T), Device::cpu, 1);
  randomize(g);
  const int64_t V = g.config().padded_vocab_size;
  std::vector<int32_t> seq = tokens(T, g.config().vocab_size);
  model::KvDecoder dec(g);
  std::vector<float> kv(static_cast<size_t>(T * V));
  dec.append(seq, kv.data(), true);
  const std::vector<float> full = full_logits(g, seq);
  EXPECT_LE(row_rel_error(kv.data() + (T - 1) * V, full.data() + (T - 1) * V, V), kRowTol);
  std::vector<int32_t> other = seq;
  other[0] = (other[0] + 1) % static_cast<int32_t>(g.config().vocab_size);
  const std::vector<float> changed = full_logits(g, other);
  const double first_token = row_rel_error(kv.data() + (T - 1) * V, changed.data() + (T - 1) * V, V);
  const double shifted = row_rel_error(kv.data() + (T - 1) * V, full.data() + (T - 2) * V, V);
  std::printf("negative controls: first token changed %.3g, position shifted %.3g (tolerance %.0e)\n", first_token,
              shifted, kRowTol);
  EXPECT_GT(first_token, 100 * kRowTol);
  EXPECT_GT(shifted, 100 * kRowTol);
}

TEST_F(KvCacheTest, ContextRule) {
  EXPECT_EQ(model::context_start(0, 10, 16), 0);
  EXPECT_EQ(model::context_start(0, 16, 16), 0);
  EXPECT_EQ(model::context_start(0, 17, 16), 9);   // keep 8
  EXPECT_EQ(model::context_start(9, 25, 16), 9);   // 16 tokens fit
  EXPECT_EQ(model::context_start(9, 26, 16), 18);
  EXPECT_EQ(model::context_start(0, 100, 16), 92);  // a long prompt: its last 8
  EXPECT_EQ(model::context_start(0, 2, 1), 1);      // capacity 1 keeps 1
}

// Greedy decoding equals, token for token, the argmax of a full recompute of the same
// context (the context rule applied independently here), through several context restarts.
// Where the two disagree the full logits of both tokens must lie within fp32 noise of each
// other (a near-tie that rounding may break either way); counted and reported. Returns how
// many model draws were needed before the greedy output had >= 10 distinct tokens (0: the first).
int KvCacheTest::greedy_equals_argmax_of_full_recompute() {
  const int64_t T = 24, N = 70;
  model::Gpt g(small_model(T), Device::cpu, 1);
  const int64_t V = g.config().padded_vocab_size, vocab = g.config().vocab_size;
  model::SamplingOptions o;
  o.tokens = N;
  o.temperature = 0.0;
  o.vocab_limit = vocab;
  // A random model's greedy output can collapse into repeating one token (seed 3552343314):
  // a context of one token repeated gives the same logits wherever it starts, so such a draw
  // cannot tell a right decoder from one that drops its context. Draw the model and prompt
  // again (deterministically, from the test's seed) until the output has >= 10 distinct tokens.
  std::vector<int32_t> prompt;
  model::Generation gen;
  int draw = 0;
  for (;; ++draw) {
    if (draw >= 8) {
      ADD_FAILURE() << "every draw's greedy output collapsed";
      return draw;
    }
    randomize(g);
    prompt = tokens(5, vocab);
    model::KvDecoder dec(g);
    gen = model::generate(dec, prompt, o);
    EXPECT_EQ(static_cast<int64_t>(gen.tokens.size()), N);
    if (static_cast<int64_t>(gen.tokens.size()) != N) return draw;
    if (std::set<int32_t>(gen.tokens.begin(), gen.tokens.end()).size() >= 10) break;
  }
  EXPECT_GE(gen.prefills, 4);  // 75 tokens through a 24-token context: restarts at 25, 37, 49, 61, 73
  std::vector<int32_t> all = prompt;
  int64_t start = 0, near_ties = 0;
  std::vector<std::vector<float>> context_rows;  // the full recompute's last row at each step
  for (int64_t i = 0; i < N; ++i) {
    start = i == 0 ? model::context_start(0, static_cast<int64_t>(all.size()), T)
                   : model::context_start(start, static_cast<int64_t>(all.size()), T);
    const std::vector<int32_t> ctx(all.begin() + start, all.end());
    const std::vector<float> full = full_logits(g, ctx);
    const float* row = full.data() + (ctx.size() - 1) * V;
    context_rows.emplace_back(row, row + vocab);
    const auto best = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
    if (gen.tokens[i] != best) {
      ++near_ties;
      EXPECT_LE(row[best] - row[gen.tokens[i]], 1e-4 * std::fabs(row[best])) << "step " << i;
    }
    all.push_back(gen.tokens[i]);
  }
  EXPECT_LE(near_ties, 1);
  // Negative control: the context matters, so the check above is not vacuous. The logits a
  // decoder without context would use (every step from the last token alone) are far from the
  // full recompute's at many steps, far beyond the near-tie tolerance used above. Over 201
  // seeds (100..300) the count of such steps (of 69) was >= 32, 69 for most: >= 10 leaves room.
  int64_t far = 0;
  for (int64_t i = 1; i < N; ++i) {
    const std::vector<float> alone = full_logits(g, {all[prompt.size() + i - 1]});
    const std::vector<float>& with = context_rows[static_cast<size_t>(i)];
    float diff = 0.0f, scale = 0.0f;
    for (int64_t k = 0; k < vocab; ++k) {
      diff = std::max(diff, std::fabs(with[static_cast<size_t>(k)] - alone[static_cast<size_t>(k)]));
      scale = std::max(scale, std::fabs(with[static_cast<size_t>(k)]));
    }
    far += diff > 1e-2f * scale;
  }
  std::printf("context changes the logits by > 1%% at %lld of %lld steps\n", static_cast<long long>(far),
              static_cast<long long>(N - 1));
  EXPECT_GE(far, 10);
  return draw;
}

TEST_F(KvCacheTest, GreedyEqualsArgmaxOfFullRecompute) { greedy_equals_argmax_of_full_recompute(); }

// Regression: the draw of seed 3552343314 (a full-suite run's) collapses to one repeated token,
// and failed the old negative control; it is redrawn once, then passes.
TEST_F(KvCacheTest, GreedyOutputThatCollapsesIsRedrawn) {
  rng_.seed(3552343314ull);
  EXPECT_EQ(greedy_equals_argmax_of_full_recompute(), 1);
}

TEST_F(KvCacheTest, SameSeedSameTokens) {
  model::Gpt g(small_model(32), Device::cpu, 1);
  randomize(g);
  model::KvDecoder dec(g);
  const std::vector<int32_t> prompt = tokens(3, g.config().vocab_size);
  model::SamplingOptions o;
  o.tokens = 50;
  o.temperature = 1.0;
  o.vocab_limit = g.config().vocab_size;
  o.seed = rng_();
  const auto a = model::generate(dec, prompt, o).tokens, b = model::generate(dec, prompt, o).tokens;
  EXPECT_EQ(a, b);
  o.seed += 1;
  EXPECT_NE(model::generate(dec, prompt, o).tokens, a);  // 50 draws from ~300 ids: equal only by a fluke
  // top_k = 1 is greedy whatever the seed and temperature.
  o.top_k = 1;
  const auto k1 = model::generate(dec, prompt, o).tokens;
  o.temperature = 0.0;
  o.top_k = 0;
  EXPECT_EQ(model::generate(dec, prompt, o).tokens, k1);
  for (int32_t t : a) EXPECT_LT(t, g.config().vocab_size);  // padded rows never drawn
}

// pick_token draws from softmax(z / T) restricted to the top k: frequencies over many draws
// agree with the probabilities within 5 standard deviations of a binomial count (a wrong
// temperature or an off-by-one in the cumulative sum moves them by far more); ids outside
// the top k, and ids at or above vocab_limit, are never drawn.
TEST_F(KvCacheTest, SamplerDrawsTheTemperedDistribution) {
  const int64_t V = 12, draws = 200000;
  std::vector<float> z(V + 3);
  std::normal_distribution<double> n(0.0, 1.0);
  for (auto& x : z) x = static_cast<float>(n(rng_));
  z[V] = z[V + 1] = z[V + 2] = 100.0f;  // beyond vocab_limit: must never be drawn
  for (const auto& [temperature, top_k] : std::vector<std::pair<double, int64_t>>{{1.0, 0}, {0.5, 0}, {2.0, 5}}) {
    SCOPED_TRACE("temperature " + std::to_string(temperature) + ", top_k " + std::to_string(top_k));
    model::SamplingOptions o;
    o.temperature = temperature;
    o.top_k = top_k;
    o.vocab_limit = V;
    std::vector<int32_t> order(V);
    for (int32_t i = 0; i < V; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
    std::vector<double> p(V, 0.0);
    double total = 0;
    for (int64_t j = 0; j < (top_k ? top_k : V); ++j) total += p[order[j]] = std::exp(z[order[j]] / temperature);
    std::mt19937_64 rng(rng_());
    std::map<int32_t, int64_t> count;
    for (int64_t i = 0; i < draws; ++i) ++count[model::pick_token(z.data(), o, rng)];
    for (int32_t i = 0; i < V; ++i) {
      const double expected = draws * p[i] / total;
      const double sd = std::sqrt(draws * (p[i] / total) * (1 - p[i] / total));
      if (p[i] == 0.0) EXPECT_EQ(count[i], 0) << "id " << i;
      else EXPECT_NEAR(count[i], expected, 5 * sd + 1) << "id " << i;
    }
    EXPECT_EQ(count.count(V), 0u);
  }
  // Negative control: the counts of T = 1 are far from the probabilities of T = 0.5.
  model::SamplingOptions o;
  o.temperature = 1.0;
  o.vocab_limit = V;
  std::mt19937_64 rng(rng_());
  const int32_t top = static_cast<int32_t>(std::max_element(z.begin(), z.begin() + V) - z.begin());
  int64_t top_count = 0;
  for (int64_t i = 0; i < draws; ++i) top_count += model::pick_token(z.data(), o, rng) == top;
  double sharp = 0, all = 0;
  for (int32_t i = 0; i < V; ++i) all += std::exp(z[i] / 0.5);
  sharp = std::exp(z[top] / 0.5) / all;
  EXPECT_GT(std::fabs(top_count - draws * sharp), 5 * std::sqrt(draws * sharp * (1 - sharp)));
  o.temperature = -1;
  EXPECT_THROW(model::pick_token(z.data(), o, rng), std::invalid_argument);
}

}  // namespace
}  // namespace speedrun
