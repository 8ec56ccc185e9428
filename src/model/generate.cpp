#include "model/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace speedrun::model {

int64_t context_start(int64_t start, int64_t length, int64_t capacity) {
  if (length - start <= capacity) return start;
  return length - std::max<int64_t>(1, capacity / 2);
}

int32_t pick_token(const float* logits, const SamplingOptions& o, std::mt19937_64& rng) {
  const int64_t V = o.vocab_limit;
  if (V < 1) throw std::invalid_argument("pick_token: vocab_limit " + std::to_string(V));
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature) || o.top_k < 0)
    throw std::invalid_argument("pick_token: temperature " + std::to_string(o.temperature) + ", top_k " +
                                std::to_string(o.top_k));
  if (o.temperature == 0.0) return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);

  // Candidates in increasing id order: every id, or the top_k by (logit desc, id asc).
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  if (o.top_k > 0 && o.top_k < V) {
    const auto k = static_cast<std::ptrdiff_t>(o.top_k);
    std::nth_element(ids.begin(), ids.begin() + k - 1, ids.end(), [logits](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    ids.resize(static_cast<size_t>(k));
    std::sort(ids.begin(), ids.end());
  }
  double zmax = -INFINITY;
  for (int32_t i : ids) zmax = std::max(zmax, static_cast<double>(logits[i]));
  std::vector<double> weight(ids.size());
  double total = 0.0;
  for (size_t j = 0; j < ids.size(); ++j) {
    weight[j] = std::exp((static_cast<double>(logits[ids[j]]) - zmax) / o.temperature);
    total += weight[j];
  }
  const double u = static_cast<double>(rng() >> 11) * 0x1p-53;  // [0, 1)
  const double target = u * total;
  double cumulative = 0.0;
  for (size_t j = 0; j < ids.size(); ++j) {
    cumulative += weight[j];
    if (cumulative > target) return ids[j];
  }
  // Rounding can leave target at the very end: the last candidate of non-zero weight.
  for (size_t j = ids.size(); j-- > 0;)
    if (weight[j] > 0.0) return ids[j];
  return ids.back();
}

Generation generate(KvDecoder& decoder, const std::vector<int32_t>& prompt, const SamplingOptions& o,
                    bool keep_logits, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) throw std::invalid_argument("generate: empty prompt");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t V = decoder.model().config().padded_vocab_size, cap = decoder.capacity();
  if (o.vocab_limit > V)
    throw std::invalid_argument("generate: vocab_limit " + std::to_string(o.vocab_limit) + " > padded vocab " +
                                std::to_string(V));
  std::vector<int32_t> all = prompt;
  std::vector<float> logits(static_cast<size_t>(V));
  std::mt19937_64 rng(o.seed);
  Generation g;
  if (keep_logits) g.logits.reserve(static_cast<size_t>(o.tokens * V));

  int64_t start = context_start(0, static_cast<int64_t>(all.size()), cap);
  auto prefill = [&] {
    decoder.reset();
    decoder.append(std::span<const int32_t>(all).subspan(static_cast<size_t>(start)), logits.data());
    ++g.prefills;
  };
  prefill();
  for (int64_t i = 0; i < o.tokens; ++i) {
    const int32_t token = pick_token(logits.data(), o, rng);
    if (keep_logits) g.logits.insert(g.logits.end(), logits.begin(), logits.end());
    all.push_back(token);
    g.tokens.push_back(token);
    if (on_token) on_token(token);
    if (i + 1 == o.tokens) break;
    const int64_t next = context_start(start, static_cast<int64_t>(all.size()), cap);
    if (next != start) {
      start = next;
      prefill();
    } else {
      decoder.append(std::span<const int32_t>(&all.back(), 1), logits.data());
    }
  }
  g.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return g;
}

}  // namespace speedrun::model
