// The document-aligned training loader (data.align_to_bos; record #26's
// distributed_data_generator(align_to_bos=True), data/bos_align.h and data/loader.h).
#include <gtest/gtest.h>

#include "test_support.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <random>

#include "core/error.h"
#include "data/bos_align.h"
#include "data/loader.h"
#include "data/shard.h"

namespace fs = std::filesystem;
using namespace speedrun::data;
using speedrun::UserError;

namespace {

constexpr uint16_t kBos = 50256;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("speedrun-bos-test-" + std::to_string(::getpid()) + "-" +
                                         std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

using speedrun::test::error_of;
using speedrun::test::seeded_rng;

// A stream of documents, each a BOS then `len - 1` random non-BOS ids; lengths drawn
// from [1, max_len], so that some documents are shorter and some longer than seq_len.
std::vector<uint16_t> random_documents(int64_t n, int64_t max_len, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> len_d(1, max_len);
  std::uniform_int_distribution<int> id_d(0, kBos - 1);
  std::vector<uint16_t> t;
  while (static_cast<int64_t>(t.size()) < n) {
    const int64_t len = len_d(rng);
    t.push_back(kBos);
    for (int64_t i = 1; i < len; ++i) t.push_back(static_cast<uint16_t>(id_d(rng)));
  }
  t.resize(static_cast<size_t>(n));
  return t;
}

// Upstream's find_batch_starts, transliterated line by line (train_gpt.py at 345b2fb):
//   boundary_positions = nonzero(tokens[pos:pos+max_batch_span] == 50256) + pos
//   start = boundary_positions[0]; starts = []
//   for i in range(1, len(boundary_positions)):
//       end = boundary_positions[i]
//       if end - start >= local_batch_size:
//           starts.append(start)
//           if len(starts) == world_size: return starts, end - pos
//           start = end
//   assert False
std::optional<std::pair<std::vector<int64_t>, int64_t>> upstream_find_batch_starts(const std::vector<uint16_t>& tokens,
                                                                                   int64_t pos, int64_t count,
                                                                                   int64_t local, int64_t span) {
  std::vector<int64_t> boundary;
  for (int64_t i = pos; i < std::min<int64_t>(pos + span, tokens.size()); ++i)
    if (tokens[i] == kBos) boundary.push_back(i);
  if (boundary.empty()) return std::nullopt;  // upstream: IndexError
  int64_t start = boundary[0];
  std::vector<int64_t> starts;
  for (size_t i = 1; i < boundary.size(); ++i) {
    const int64_t end = boundary[i];
    if (end - start >= local) {
      starts.push_back(start);
      if (static_cast<int64_t>(starts.size()) == count) return std::make_pair(starts, end - pos);
      start = end;
    }
  }
  return std::nullopt;  // upstream: assert False
}

std::vector<ShardInfo> write_shards(const TempDir& dir, const std::vector<std::vector<uint16_t>>& data) {
  for (size_t i = 0; i < data.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "train_%06zu.bin", i + 1);
    write_shard(dir.path() / name, data[i]);
  }
  return list_shards((dir.path() / "train_*.bin").string(), "data.train_glob");
}

LoaderOptions aligned(int64_t b, int rank, int world, int64_t seq_len, int64_t epochs = 1) {
  return LoaderOptions{b, rank, world, 50257, epochs, "data.train_glob", true, seq_len};
}

}  // namespace

// A hand-worked window, its expected values stated: BOS at 0, 3, 5, 12, 14, 20;
// seq_len 4, two starts. 3 - 0 < 4 passes over 3 (the candidate stays 0); 5 - 0 >= 4
// confirms 0 and moves the candidate to 5; 12 - 5 >= 4 confirms 5: starts {0, 5}, and
// the next step searches from 12 (span 12).
TEST(BosAlign, HandWorkedWindow) {
  std::vector<uint16_t> t(24, 7);
  for (int i : {0, 3, 5, 12, 14, 20}) t[i] = kBos;
  const auto a = find_aligned_starts(t.data(), 0, 24, 2, 4);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->starts, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(a->span, 12);
  // From position 1 (not a BOS) the first BOS at 3 is the first candidate: 3, confirmed
  // by 12 (5 - 3 < 4 passed over); then 12, confirmed by 20: starts {3, 12}, span 19.
  const auto b = find_aligned_starts(t.data(), 1, 24, 2, 4);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->starts, (std::vector<int64_t>{3, 12}));
  EXPECT_EQ(b->span, 19);
  // A third start: 14 - 12 < 4 is passed over, 20 - 12 >= 4 confirms 12 (span 20); a
  // fourth would need a BOS >= 24 after 20: none in the window.
  const auto c = find_aligned_starts(t.data(), 0, 24, 3, 4);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->starts, (std::vector<int64_t>{0, 5, 12}));
  EXPECT_EQ(c->span, 20);
  EXPECT_FALSE(find_aligned_starts(t.data(), 0, 24, 4, 4));
  // The window's end is respected: the BOS at 20 is outside [0, 20).
  EXPECT_FALSE(find_aligned_starts(t.data(), 1, 20, 2, 4));
  // No BOS at all.
  const std::vector<uint16_t> none(50, 9);
  EXPECT_FALSE(find_aligned_starts(none.data(), 0, 50, 1, 4));
}

// Against the transliteration of upstream on fresh random document streams.
TEST(BosAlign, MatchesUpstreamOnRandomStreams) {
  auto rng = seeded_rng();
  int found = 0, missing = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t seq_len = std::uniform_int_distribution<int64_t>(1, 40)(rng);
    const int64_t count = std::uniform_int_distribution<int64_t>(1, 6)(rng);
    const int64_t max_doc = std::uniform_int_distribution<int64_t>(1, 3 * seq_len)(rng);
    const auto t = random_documents(2 * seq_len * count + 50, max_doc, rng);
    const int64_t pos = std::uniform_int_distribution<int64_t>(0, 20)(rng);
    const int64_t span = 2 * seq_len * count;
    const auto want = upstream_find_batch_starts(t, pos, count, seq_len, span);
    const auto got = find_aligned_starts(t.data(), pos, pos + span, count, seq_len);
    ASSERT_EQ(static_cast<bool>(got), static_cast<bool>(want)) << "trial " << trial;
    if (!want) {
      ++missing;
      continue;
    }
    ++found;
    EXPECT_EQ(got->starts, want->first) << "trial " << trial;
    EXPECT_EQ(got->span, want->second) << "trial " << trial;
  }
  EXPECT_GT(found, 100);  // the comparison is not vacuous
  std::printf("%d windows with starts, %d without\n", found, missing);
}

// The loader over several shards and ranks: every sequence starts at a BOS, sequences
// of one step are disjoint and ordered, the ranks split one step's sequences between
// them (a world of R reads exactly what one process reads), the stream follows
// upstream's pos / shard rule, and two loaders agree (deterministic).
TEST(LoaderAligned, SequencesStartAtDocumentsAcrossRanksAndShards) {
  TempDir dir;
  auto rng = seeded_rng();
  const int64_t seq_len = 16, b = 64;  // 4 sequences per step
  // Lengths around the rollover rule pos + 2b + 1 >= len. Documents of at most 15 tokens
  // (< seq_len) always leave 4 starts in the 2b window (each start is confirmed within
  // 16 + 14 tokens: 4 x 30 < 128); longer documents are covered by BosAlign above.
  std::vector<std::vector<uint16_t>> data;
  for (int64_t len : {2 * b + 1, 2 * b + 2, int64_t{100}, int64_t{700}, int64_t{901}})
    data.push_back(random_documents(len, 15, rng));
  const auto shards = write_shards(dir, data);

  // Upstream's generator, simulated here: (shard, pos) and the starts of each step.
  struct Step {
    size_t shard;
    std::vector<int64_t> starts;
  };
  std::vector<Step> expected;
  for (size_t s = 0; s < data.size(); ++s) {
    int64_t pos = 0;
    while (pos + 2 * b + 1 < static_cast<int64_t>(data[s].size())) {
      const auto w = upstream_find_batch_starts(data[s], pos, b / seq_len, seq_len, 2 * b);
      ASSERT_TRUE(w) << "shard " << s << " pos " << pos << ": the test data must hold enough documents";
      expected.push_back({s, w->first});
      pos += w->second;
    }
  }
  ASSERT_GT(expected.size(), 10u);  // about 17: a step consumes b plus the gaps before starts

  for (int world : {1, 2, 4}) {
    std::vector<TrainLoader> loaders, again;
    for (int r = 0; r < world; ++r) {
      loaders.emplace_back(shards, aligned(b, r, world, seq_len));
      again.emplace_back(shards, aligned(b, r, world, seq_len));
    }
    for (size_t step = 0; step < expected.size(); ++step) {
      const auto& e = expected[step];
      const auto& tokens = data[e.shard];
      for (int r = 0; r < world; ++r) {
        Batch batch, twin;
        loaders[r].next(batch);
        again[r].next(twin);
        ASSERT_EQ(batch.inputs, twin.inputs);
        ASSERT_EQ(batch.inputs.size(), static_cast<size_t>(b / world));
        const int64_t per_rank = b / world / seq_len;
        for (int64_t j = 0; j < per_rank; ++j) {
          const int64_t start = e.starts[static_cast<size_t>(r * per_rank + j)];
          ASSERT_EQ(batch.inputs[j * seq_len], kBos) << "world " << world << " step " << step;
          for (int64_t i = 0; i < seq_len; ++i) {
            ASSERT_EQ(batch.inputs[j * seq_len + i], tokens[start + i]);
            ASSERT_EQ(batch.targets[j * seq_len + i], tokens[start + i + 1]);
          }
        }
      }
      // Disjoint and ordered: each start at least seq_len after the previous.
      for (size_t j = 1; j < e.starts.size(); ++j) ASSERT_GE(e.starts[j] - e.starts[j - 1], seq_len);
    }
    Batch extra;
    EXPECT_NE(error_of([&] { loaders[0].next(extra); }).find("training data exhausted"), std::string::npos);
  }

  // The exact count after a scan of the whole pass; before, an upper bound.
  TrainLoader counted(shards, aligned(b, 0, 1, seq_len));
  EXPECT_FALSE(counted.batches_per_epoch_exact());
  EXPECT_GE(counted.batches_per_epoch(), static_cast<int64_t>(expected.size()));
  counted.check_enough_for(static_cast<int64_t>(expected.size()));
  // Exactly the pass's count of steps: the scan reached the pass's end.
  EXPECT_TRUE(counted.batches_per_epoch_exact());
  EXPECT_EQ(counted.batches_per_epoch(), static_cast<int64_t>(expected.size()));
  EXPECT_EQ(counted.min_shard_tokens(), 2 * b + 2);
  // Shards of 129 and 100 tokens hold no batch (fewer than 2b + 2 = 130).
  ASSERT_EQ(counted.skipped_shards().size(), 2u);
  EXPECT_EQ(counted.skipped_shards()[0].num_tokens, 2 * b + 1);
  EXPECT_EQ(counted.skipped_shards()[1].num_tokens, 100);
  int64_t total = 0;
  for (const auto& d : data) total += static_cast<int64_t>(d.size());
  EXPECT_EQ(counted.tokens_unread_per_epoch(), total - static_cast<int64_t>(expected.size()) * b);
  {
    // The scan (which lets the loader's shard go and reads it again) leaves the stream at
    // its start: the first batch is still the first expected one.
    Batch after_scan;
    counted.next(after_scan);
    ASSERT_EQ(after_scan.inputs.size(), static_cast<size_t>(b));
    for (size_t j = 0; j < expected[0].starts.size(); ++j)
      EXPECT_EQ(after_scan.inputs[j * seq_len + 1], data[expected[0].shard][expected[0].starts[j] + 1]);
  }
  const std::string e = error_of([&] { counted.check_enough_for(static_cast<int64_t>(expected.size()) + 1); });
  EXPECT_NE(e.find("yield " + std::to_string(expected.size()) + " document-aligned batches per pass"),
            std::string::npos)
      << e;
  // A second pass starts again at the first shard's first aligned batch.
  TrainLoader two(shards, aligned(b, 0, 1, seq_len, 2));
  Batch first, batch;
  two.next(first);
  for (size_t i = 1; i < expected.size(); ++i) two.next(batch);
  two.next(batch);
  EXPECT_EQ(two.epoch(), 2);
  EXPECT_EQ(batch.inputs, first.inputs);
}

// Negative control: the same stream read without alignment starts mid-document, so
// the BOS checks above are not vacuous.
TEST(LoaderAligned, UnalignedControlStartsMidDocument) {
  TempDir dir;
  auto rng = seeded_rng();
  const auto shards = write_shards(dir, {random_documents(2000, 24, rng)});
  TrainLoader plain(shards, LoaderOptions{64, 0, 1, 50257, 1, "data.train_glob"});
  int not_bos = 0;
  Batch batch;
  for (int step = 0; step < 20; ++step) {
    plain.next(batch);
    for (int j = 0; j < 4; ++j) not_bos += batch.inputs[j * 16] != kBos;
  }
  EXPECT_GT(not_bos, 40);  // documents average 12.5 tokens: most slices start inside one
}

// A window without enough document starts: a clear error naming the shard and position
// (upstream asserts), from next() and, before any training, from check_enough_for.
TEST(LoaderAligned, TooFewDocumentStartsIsAnError) {
  TempDir dir;
  auto rng = seeded_rng();
  const int64_t seq_len = 16, b = 32;
  // Shard 1: fine for its first batches, then a 200-token stretch with no BOS.
  std::vector<uint16_t> tokens = random_documents(120, 10, rng);
  for (int i = 0; i < 200; ++i) tokens.push_back(static_cast<uint16_t>(i + 1));
  const auto more = random_documents(100, 10, rng);
  tokens.insert(tokens.end(), more.begin(), more.end());
  const auto shards = write_shards(dir, {tokens});
  TrainLoader loader(shards, aligned(b, 0, 1, seq_len));
  const std::string up_front = error_of([&] { loader.check_enough_for(1000); });
  EXPECT_NE(up_front.find("train_000001.bin: data.align_to_bos needs 2 document starts (token 50256)"),
            std::string::npos)
      << up_front;
  EXPECT_NE(up_front.find("within the 64 tokens from position"), std::string::npos) << up_front;
  Batch batch;
  std::string during;
  for (int i = 0; i < 20 && during.empty(); ++i) during = error_of([&] { loader.next(batch); });
  EXPECT_EQ(during, up_front);
  // A shard with no BOS at all fails at the first batch.
  TempDir dir2;
  std::vector<uint16_t> flat(300);
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<uint16_t>(i % 1000);
  const auto shards2 = write_shards(dir2, {flat});
  TrainLoader none(shards2, aligned(b, 0, 1, seq_len));
  EXPECT_NE(error_of([&] { none.next(batch); }).find("position 0"), std::string::npos);
}

TEST(LoaderAligned, OptionErrors) {
  TempDir dir;
  auto rng = seeded_rng();
  const auto shards = write_shards(dir, {random_documents(500, 10, rng)});
  EXPECT_NE(error_of([&] { TrainLoader(shards, aligned(48, 0, 2, 16)); })
                .find("must be a multiple of processes x model.seq_len = 2 x 16"),
            std::string::npos);
  LoaderOptions small_vocab = aligned(32, 0, 1, 16);
  small_vocab.vocab_size = 50256;
  EXPECT_NE(error_of([&] { TrainLoader::check_data(shards, small_vocab, 1); }).find("model.vocab_size is 50256"),
            std::string::npos);
  // Too little data, from the headers alone: the bound is (500 - 2*32 - 2) / 32 + 1 = 14.
  const std::string e = error_of([&] { TrainLoader::check_data(shards, aligned(32, 0, 1, 16), 1000); });
  EXPECT_NE(e.find("yield at most 14 document-aligned batches per pass"), std::string::npos) << e;
  const std::string tiny = error_of([&] { TrainLoader(shards, aligned(256, 0, 1, 16)); });
  EXPECT_NE(tiny.find("no shard holds more than 2 x train.batch_tokens + 1 = 513 tokens"), std::string::npos) << tiny;
}
