#include "compare/comparability.h"

#include <algorithm>

#include <spdlog/fmt/fmt.h>

#include "core/error.h"
#include "data/shard.h"
#include "model/flops.h"
#include "model/registry.h"

namespace speedrun::compare {

namespace {

// Incremental FNV-1a 64 (core/hash.h's, over several pieces).
struct Fnv {
  uint64_t h = 14695981039346656037ull;
  void add(const void* p, size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
  }
  template <class T>
  void add_value(T v) {
    add(&v, sizeof v);
  }
  std::string hex() const { return fmt::format("{:016x}", h); }
};

constexpr int64_t kTrainSampleTokens = 65536;
constexpr int64_t kReadChunk = int64_t{1} << 20;

}  // namespace

ModelFacts model_facts(const config::RunConfig& cfg) {
  ModelFacts f;
  f.arch = cfg.model.arch;
  f.parameters = model::layout_for(cfg.model).total_numel();
  f.matmul_params = model::matmul_params(cfg.model);
  f.flops_per_token = model::flops_per_token(cfg.model);
  return f;
}

DataFingerprint data_fingerprint(const config::RunConfig& cfg) {
  DataFingerprint out;
  try {
    const std::vector<data::ShardInfo> val = data::list_shards(cfg.data.val_glob, "data.val_glob");
    Fnv v;
    int64_t left = cfg.data.val_tokens + 1;  // inputs and targets of every validation sequence
    v.add_value(left);
    for (const data::ShardInfo& s : val) {
      for (int64_t at = 0; at < s.num_tokens && left > 0;) {
        const int64_t n = std::min({kReadChunk, s.num_tokens - at, left});
        const std::vector<uint16_t> t = data::read_shard_tokens(s.path, at, n, 0);
        v.add(t.data(), t.size() * sizeof(uint16_t));
        at += n;
        left -= n;
      }
    }
    if (left > 0) return out;  // too few tokens: the runs say so
    const std::vector<data::ShardInfo> train = data::list_shards(cfg.data.train_glob, "data.train_glob");
    Fnv t;
    for (const data::ShardInfo& s : train) {
      t.add_value(s.num_tokens);
      const std::vector<uint16_t> head = data::read_shard_tokens(s.path, 0, std::min(s.num_tokens, kTrainSampleTokens), 0);
      t.add(head.data(), head.size() * sizeof(uint16_t));
    }
    out.val = v.hex();
    out.train = t.hex();
    out.val_shards = static_cast<int64_t>(val.size());
    out.train_shards = static_cast<int64_t>(train.size());
    out.readable = true;
  } catch (const UserError&) {
    return DataFingerprint{};
  }
  return out;
}

void check_comparable(const std::vector<ComparedConfig>& configs, const std::vector<DataFingerprint>& data) {
  size_t ref = configs.size();
  for (size_t i = 0; i < configs.size(); ++i)
    if (data[i].readable) {
      ref = i;
      break;
    }
  if (ref == configs.size()) return;
  auto val_of = [&](size_t i) {
    const auto& d = configs[i].cfg.data;
    return fmt::format("{} ({}): data.val_glob {} ({} shard(s)), data.val_tokens {}, token fingerprint {}", configs[i].label,
                       configs[i].file, d.val_glob, data[i].val_shards, d.val_tokens, data[i].val);
  };
  auto train_of = [&](size_t i) {
    return fmt::format("{} ({}): data.train_glob {} ({} shard(s), {})", configs[i].label, configs[i].file,
                       configs[i].cfg.data.train_glob, data[i].train_shards, data[i].train);
  };
  std::string val_problems, train_problems;
  for (size_t i = 0; i < configs.size(); ++i) {
    if (i == ref || !data[i].readable) continue;
    if (data[i].val != data[ref].val) val_problems += "\n  " + val_of(i);
    if (data[i].train != data[ref].train) train_problems += "\n  " + train_of(i);
  }
  std::string msg;
  if (!val_problems.empty())
    msg += "the configs validate on different tokens, so their validation losses cannot be compared; against\n  " +
           val_of(ref) + "\nthese differ:" + val_problems +
           "\n(the tokens evaluated are the first data.val_tokens + 1 of the validation shards; set data.val_glob and "
           "data.val_tokens alike, e.g. --set data.val_tokens=N)";
  if (!train_problems.empty())
    msg += std::string(msg.empty() ? "" : "\n") +
           "the configs train on different data (shard count, sizes or contents differ); against\n  " + train_of(ref) +
           "\nthese differ:" + train_problems;
  if (!msg.empty()) throw UserError(msg + "\nnothing was run");
}

}  // namespace speedrun::compare
