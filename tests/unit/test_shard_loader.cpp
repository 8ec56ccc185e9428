// Token shards (reader, writer, corrupt files) and the Track 3 loader.
#include <gtest/gtest.h>

#include "test_support.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "core/error.h"
#include "data/loader.h"
#include "data/shard.h"

namespace fs = std::filesystem;
using namespace speedrun::data;
using speedrun::UserError;

namespace {

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("speedrun-shard-test-" + std::to_string(::getpid()) + "-" +
                                         std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

std::vector<uint16_t> random_tokens(size_t n, uint16_t below, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(0, below - 1);
  std::vector<uint16_t> t(n);
  for (auto& x : t) x = static_cast<uint16_t>(d(rng));
  return t;
}

void write_raw(const fs::path& p, std::array<int32_t, 256> header, const std::vector<uint16_t>& body) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(header.data()), 1024);
  f.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size() * 2));
}

std::array<int32_t, 256> header_for(int32_t n) {
  std::array<int32_t, 256> h{};
  h[0] = kShardMagic;
  h[1] = kShardVersion;
  h[2] = n;
  return h;
}

using speedrun::test::error_of;
using speedrun::test::seeded_rng;

}  // namespace

TEST(ShardIo, WriteThenReadRoundTrips) {
  TempDir dir;
  auto rng = seeded_rng();
  const auto tokens = random_tokens(12345, 50257, rng);
  write_shard(dir.path() / "a.bin", tokens);
  EXPECT_EQ(fs::file_size(dir.path() / "a.bin"), 1024u + 2u * tokens.size());
  EXPECT_EQ(read_shard_header(dir.path() / "a.bin").num_tokens, 12345);
  EXPECT_EQ(read_shard(dir.path() / "a.bin", 50257), tokens);
  const auto part = read_shard_tokens(dir.path() / "a.bin", 100, 50, 50257);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), tokens.begin() + 100));
  // The header is exactly the modded-nanogpt layout.
  std::ifstream f(dir.path() / "a.bin", std::ios::binary);
  std::array<int32_t, 256> h{};
  f.read(reinterpret_cast<char*>(h.data()), 1024);
  EXPECT_EQ(h[0], 20240520);
  EXPECT_EQ(h[1], 1);
  EXPECT_EQ(h[2], 12345);
  EXPECT_TRUE(std::all_of(h.begin() + 3, h.end(), [](int32_t x) { return x == 0; }));
}

TEST(ShardErrors, WrongMagicVersionAndSize) {
  TempDir dir;
  const std::vector<uint16_t> body(10, 7);
  auto h = header_for(10);
  h[0] = 12345;
  write_raw(dir.path() / "magic.bin", h, body);
  EXPECT_NE(error_of([&] { read_shard(dir.path() / "magic.bin", 0); }).find("magic number is 12345"),
            std::string::npos);
  h = header_for(10);
  h[1] = 7;
  write_raw(dir.path() / "version.bin", h, body);
  EXPECT_NE(error_of([&] { read_shard(dir.path() / "version.bin", 0); }).find("version 7"), std::string::npos);
  write_raw(dir.path() / "trunc.bin", header_for(11), body);
  const std::string trunc = error_of([&] { read_shard(dir.path() / "trunc.bin", 0); });
  EXPECT_NE(trunc.find("truncated"), std::string::npos) << trunc;
  EXPECT_NE(trunc.find("trunc.bin"), std::string::npos);
  write_raw(dir.path() / "long.bin", header_for(9), body);
  EXPECT_NE(error_of([&] { read_shard(dir.path() / "long.bin", 0); }).find("trailing bytes"), std::string::npos);
  h = header_for(-5);
  write_raw(dir.path() / "neg.bin", h, {});
  EXPECT_NE(error_of([&] { read_shard(dir.path() / "neg.bin", 0); }).find("negative token count"), std::string::npos);
  std::ofstream(dir.path() / "short.bin") << "tiny";
  EXPECT_NE(error_of([&] { read_shard(dir.path() / "short.bin", 0); }).find("shorter than the 1024-byte header"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_shard(dir.path() / "missing.bin", 0); }).find("No such file"), std::string::npos);
  EXPECT_NE(error_of([&] { read_shard(dir.path(), 0); }).find("is a directory"), std::string::npos);
}

TEST(ShardErrors, IdAtOrAboveVocabIsReportedWithPosition) {
  TempDir dir;
  std::vector<uint16_t> body(100, 5);
  body[63] = 50257;
  write_shard(dir.path() / "v.bin", body);
  const std::string e = error_of([&] { read_shard(dir.path() / "v.bin", 50257); });
  EXPECT_NE(e.find("id 50257 at token 63"), std::string::npos) << e;
  EXPECT_NO_THROW(read_shard(dir.path() / "v.bin", 50304));
}

TEST(ShardGlob, SortedAndEmptyIsError) {
  TempDir dir;
  for (const char* name : {"x_train_000002.bin", "x_train_000010.bin", "x_train_000001.bin"})
    write_shard(dir.path() / name, std::vector<uint16_t>(4, 1));
  const auto shards = list_shards((dir.path() / "x_train_*.bin").string(), "data.train_glob");
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[0].path.filename(), "x_train_000001.bin");
  EXPECT_EQ(shards[2].path.filename(), "x_train_000010.bin");
  const std::string e = error_of([&] { list_shards((dir.path() / "nothing_*.bin").string(), "data.val_glob"); });
  EXPECT_NE(e.find("data.val_glob: no files match"), std::string::npos) << e;
}

// The loader reproduces upstream's distributed_data_generator exactly.
TEST(LoaderTrack3, MatchesUpstreamSlicingAcrossRanksAndShards) {
  TempDir dir;
  auto rng = seeded_rng();
  const int64_t b = 64;
  // Shard lengths chosen to exercise the rollover rule pos + b + 1 >= len.
  const std::vector<size_t> lengths = {64 * 3 + 1, 64 * 3 + 2, 50, 300};
  std::vector<std::vector<uint16_t>> data;
  for (size_t i = 0; i < lengths.size(); ++i) {
    data.push_back(random_tokens(lengths[i], 1000, rng));
    char name[64];
    std::snprintf(name, sizeof name, "t_%06zu.bin", i + 1);
    write_shard(dir.path() / name, data.back());
  }
  const auto shards = list_shards((dir.path() / "t_*.bin").string(), "train");
  for (int world : {1, 2, 4}) {
    std::vector<TrainLoader> loaders;
    for (int r = 0; r < world; ++r) loaders.emplace_back(shards, LoaderOptions{b, r, world, 1000, 1, "train"});
    // Simulate upstream in this test: which (shard, pos) each step reads.
    size_t s = 0;
    int64_t pos = 0;
    for (int step = 0; step < loaders[0].batches_per_epoch(); ++step) {
      while (pos + b + 1 >= static_cast<int64_t>(data[s].size())) ++s, pos = 0;
      for (int r = 0; r < world; ++r) {
        Batch batch;
        loaders[r].next(batch);
        const int64_t local = b / world, start = pos + r * local;
        ASSERT_EQ(batch.inputs.size(), static_cast<size_t>(local));
        for (int64_t i = 0; i < local; ++i) {
          ASSERT_EQ(batch.inputs[i], data[s][start + i]) << "world " << world << " step " << step;
          ASSERT_EQ(batch.targets[i], data[s][start + i + 1]);
        }
      }
      pos += b;
    }
    Batch extra;
    EXPECT_NE(error_of([&] { loaders[0].next(extra); }).find("training data exhausted"), std::string::npos);
  }
  // Shard lengths 193, 194, 50, 300: batches 2, 3, 0, 4.
  EXPECT_EQ(TrainLoader(shards, LoaderOptions{b, 0, 1, 1000, 1, "train"}).batches_per_epoch(), 9);
}

TEST(LoaderTrack3, EpochsWrapAroundAndUpFrontCheck) {
  TempDir dir;
  std::vector<uint16_t> tokens(150);  // batches at pos 0 and 64; 128 + 65 >= 150 ends the shard
  std::iota(tokens.begin(), tokens.end(), 0);
  write_shard(dir.path() / "a.bin", tokens);
  const auto shards = list_shards((dir.path() / "*.bin").string(), "train");
  TrainLoader one(shards, LoaderOptions{64, 0, 1, 50257, 1, "data.train_glob"});
  EXPECT_EQ(one.batches_per_epoch(), 2);
  EXPECT_NE(error_of([&] { one.check_enough_for(3); }).find("raise data.epochs to at least 2"), std::string::npos);
  EXPECT_NO_THROW(one.check_enough_for(2));
  TrainLoader two(shards, LoaderOptions{64, 0, 1, 50257, 2, "data.train_glob"});
  Batch b;
  for (int i = 0; i < 3; ++i) two.next(b);
  EXPECT_EQ(two.epoch(), 2);
  EXPECT_EQ(b.inputs[0], 0);  // the second pass starts again at the first token
  two.next(b);
  EXPECT_NE(error_of([&] { two.next(b); }).find("training data exhausted after 4 batches"), std::string::npos);
}

// A checkpoint's loader position: a loader moved there reads the batches the original
// goes on to read, across shard and epoch boundaries, for every rank; a position that
// does not fit the shards is refused naming its values.
TEST(LoaderTrack3, SeekToASavedPositionContinuesExactly) {
  TempDir dir;
  std::mt19937 rng(42);
  for (int s = 0; s < 3; ++s) {
    std::vector<uint16_t> tokens(150 + 37 * s);
    for (auto& t : tokens) t = static_cast<uint16_t>(rng() % 50257);
    write_shard(dir.path() / ("s" + std::to_string(s) + ".bin"), tokens);
  }
  const auto shards = list_shards((dir.path() / "*.bin").string(), "train");
  for (int rank = 0; rank < 2; ++rank) {
    const LoaderOptions opts{32, rank, 2, 50257, 3, "data.train_glob"};
    for (int k = 0; k < 14; ++k) {
      TrainLoader a(shards, opts);
      Batch x, y;
      for (int i = 0; i < k; ++i) a.next(x);
      TrainLoader b(shards, opts);
      b.seek(a.save_position());
      for (int i = 0; i < 6; ++i) {
        a.next(x);
        b.next(y);
        ASSERT_EQ(x.inputs, y.inputs) << "rank " << rank << ", resumed after " << k << " batches, batch " << i;
        ASSERT_EQ(x.targets, y.targets);
      }
      EXPECT_EQ(a.epoch(), b.epoch());
    }
  }
  TrainLoader c(shards, LoaderOptions{32, 0, 1, 50257, 1, "data.train_glob"});
  EXPECT_NE(error_of([&] { c.seek({5, 0, 1, 0}); }).find("cannot continue at shard 5"), std::string::npos);
  EXPECT_NE(error_of([&] { c.seek({0, 0, 2, 0}); }).find("data.epochs is 1"), std::string::npos);
  EXPECT_NE(error_of([&] { c.seek({0, 1000, 1, 0}); }).find("offset 1000"), std::string::npos);
}

TEST(LoaderTrack3, ShardsTooSmallForOneBatch) {
  TempDir dir;
  write_shard(dir.path() / "a.bin", std::vector<uint16_t>(65, 1));
  const auto shards = list_shards((dir.path() / "*.bin").string(), "train");
  EXPECT_NE(error_of([&] { TrainLoader(shards, LoaderOptions{64, 0, 1, 50257, 1, "data.train_glob"}); })
                .find("no shard holds more than train.batch_tokens + 1"),
            std::string::npos);
}

TEST(LoaderTrack3, BadIdInLaterShardIsReported) {
  TempDir dir;
  write_shard(dir.path() / "a.bin", std::vector<uint16_t>(200, 1));
  std::vector<uint16_t> bad(200, 2);
  bad[150] = 60000;
  write_shard(dir.path() / "b.bin", bad);
  const auto shards = list_shards((dir.path() / "*.bin").string(), "train");
  TrainLoader loader(shards, LoaderOptions{64, 0, 1, 50257, 1, "train"});
  Batch batch;
  for (int i = 0; i < 3; ++i) loader.next(batch);  // a.bin yields 3 batches
  const std::string e = error_of([&] { loader.next(batch); });
  EXPECT_NE(e.find("b.bin: id 60000 at token 150"), std::string::npos) << e;
}

TEST(LoaderValidation, FirstTokensSplitAcrossRanksAndShards) {
  TempDir dir;
  std::vector<uint16_t> a(100), b(100);
  std::iota(a.begin(), a.end(), 0);
  std::iota(b.begin(), b.end(), 100);
  write_shard(dir.path() / "v_000000.bin", a);
  write_shard(dir.path() / "v_000001.bin", b);
  const auto shards = list_shards((dir.path() / "v_*.bin").string(), "val");
  // 160 tokens of seq_len 40: 4 sequences, an equal share for 1, 2 and 4 ranks.
  for (int world : {1, 2, 4}) {
    for (int r = 0; r < world; ++r) {
      const Batch v = load_validation_set(shards, 160, 40, r, world, 50257);
      const int64_t local = 160 / world;
      ASSERT_EQ(v.inputs.size(), static_cast<size_t>(local));
      for (int64_t i = 0; i < local; ++i) {
        ASSERT_EQ(v.inputs[i], r * local + i);  // crosses into the second shard
        ASSERT_EQ(v.targets[i], r * local + i + 1);
      }
    }
  }
  EXPECT_NE(error_of([&] { load_validation_set(shards, 200, 40, 0, 1, 50257); }).find("hold 200 tokens"),
            std::string::npos);
}

// Issue 12: 384 tokens of seq_len 128 on 2 ranks were 1.5 sequences each; the half was
// dropped and the sum still divided by 384. Now the ranks hold whole sequences, every
// one exactly once, for any number of ranks (some may hold none).
TEST(LoaderValidation, UnevenSplitCoversEveryTokenExactlyOnce) {
  TempDir dir;
  auto rng = seeded_rng();
  const std::vector<uint16_t> tokens = random_tokens(700, 1000, rng);
  write_shard(dir.path() / "v_000000.bin", std::vector<uint16_t>(tokens.begin(), tokens.begin() + 250));
  write_shard(dir.path() / "v_000001.bin", std::vector<uint16_t>(tokens.begin() + 250, tokens.end()));
  const auto shards = list_shards((dir.path() / "v_*.bin").string(), "val");
  const int64_t seq_len = 128;
  for (const int64_t val_tokens : {int64_t{128}, int64_t{384}, int64_t{640}}) {
    for (int world : {1, 2, 3, 4, 6}) {
      std::vector<int32_t> inputs, targets;
      std::vector<size_t> sizes;
      for (int r = 0; r < world; ++r) {
        const Batch v = load_validation_set(shards, val_tokens, seq_len, r, world, 1000);
        ASSERT_EQ(v.inputs.size() % seq_len, 0u) << "rank " << r << " holds a partial sequence";
        ASSERT_EQ(v.targets.size(), v.inputs.size());
        sizes.push_back(v.inputs.size() / seq_len);
        inputs.insert(inputs.end(), v.inputs.begin(), v.inputs.end());
        targets.insert(targets.end(), v.targets.begin(), v.targets.end());
      }
      // Together: exactly tokens [0, val_tokens) as inputs and [1, val_tokens] as targets.
      ASSERT_EQ(inputs.size(), static_cast<size_t>(val_tokens)) << "world " << world;
      for (int64_t i = 0; i < val_tokens; ++i) {
        ASSERT_EQ(inputs[i], tokens[i]) << "world " << world << " token " << i;
        ASSERT_EQ(targets[i], tokens[i + 1]);
      }
      // Balanced: sequence counts differ by at most one.
      const auto [lo, hi] = std::minmax_element(sizes.begin(), sizes.end());
      EXPECT_LE(*hi - *lo, 1u) << "world " << world;
    }
  }
  // 384 tokens over 2 ranks: 1 and 2 sequences (not 1.5 and 1.5).
  EXPECT_EQ(load_validation_set(shards, 384, seq_len, 0, 2, 1000).inputs.size(), 128u);
  EXPECT_EQ(load_validation_set(shards, 384, seq_len, 1, 2, 1000).inputs.size(), 256u);
}

TEST(LoaderValidation, PartialSequenceIsRefused) {
  TempDir dir;
  write_shard(dir.path() / "v.bin", std::vector<uint16_t>(1000, 3));
  const auto shards = list_shards((dir.path() / "v.bin").string(), "val");
  for (const int64_t bad : {int64_t{100}, int64_t{200}, int64_t{0}}) {
    const std::string e = error_of([&] { load_validation_set(shards, bad, 128, 0, 1, 1000); });
    EXPECT_NE(e.find("data.val_tokens (" + std::to_string(bad) + ") must be a positive multiple of model.seq_len (128)"),
              std::string::npos)
        << e;
  }
}

// What upstream's rule leaves out of one pass is counted: shard lengths 193, 194, 50,
// 300 with b = 64 give 2, 3, 0, 4 batches, so 193-128 + 194-192 + 50 + 300-256 = 161
// tokens are never an input, and the 50-token shard is skipped.
TEST(LoaderTrack3, UnreadTailsAndSkippedShardsAreCounted) {
  TempDir dir;
  const std::vector<size_t> lengths = {193, 194, 50, 300};
  for (size_t i = 0; i < lengths.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "t_%06zu.bin", i + 1);
    write_shard(dir.path() / name, std::vector<uint16_t>(lengths[i], 7));
  }
  const auto shards = list_shards((dir.path() / "t_*.bin").string(), "train");
  TrainLoader loader(shards, LoaderOptions{64, 0, 1, 1000, 1, "train"});
  EXPECT_EQ(loader.batches_per_epoch(), 9);
  EXPECT_EQ(loader.tokens_unread_per_epoch(), 161);
  ASSERT_EQ(loader.skipped_shards().size(), 1u);
  EXPECT_EQ(loader.skipped_shards()[0].path.filename(), "t_000003.bin");
  // The smallest tail upstream's `pos + b + 1 >= len` allows: a shard of 2b + 2 tokens
  // yields 2 batches; its last 2 tokens are never an input (the first of them is the
  // last batch's final target), and no shard is skipped.
  TempDir exact;
  write_shard(exact.path() / "a.bin", std::vector<uint16_t>(130, 7));
  TrainLoader one(list_shards((exact.path() / "a.bin").string(), "train"), LoaderOptions{64, 0, 1, 1000, 1, "train"});
  EXPECT_EQ(one.batches_per_epoch(), 2);
  EXPECT_EQ(one.tokens_unread_per_epoch(), 2);
  EXPECT_TRUE(one.skipped_shards().empty());
}

TEST(ShardGlob, DirectoryMatchIsRefused) {
  TempDir dir;
  write_shard(dir.path() / "x_000001.bin", std::vector<uint16_t>(4, 1));
  fs::create_directories(dir.path() / "x_000002.bin");
  const std::string e = error_of([&] { list_shards((dir.path() / "x_*").string(), "data.train_glob"); });
  EXPECT_NE(e.find("data.train_glob: '" + (dir.path() / "x_*").string() + "' matches " +
                   (dir.path() / "x_000002.bin").string() + ", which is a directory"),
            std::string::npos)
      << e;
}

TEST(ShardGlob, SameFileTwiceIsRefused) {
  TempDir dir;
  write_shard(dir.path() / "x_000001.bin", std::vector<uint16_t>(4, 1));
  fs::create_symlink(dir.path() / "x_000001.bin", dir.path() / "x_000002.bin");
  const std::string e = error_of([&] { list_shards((dir.path() / "x_*.bin").string(), "data.val_glob"); });
  EXPECT_NE(e.find("data.val_glob: '" + (dir.path() / "x_*.bin").string() + "' matches the same file twice, as " +
                   (dir.path() / "x_000001.bin").string() + " and " + (dir.path() / "x_000002.bin").string()),
            std::string::npos)
      << e;
  // Negative control: a copy is a different file, and is accepted.
  fs::remove(dir.path() / "x_000002.bin");
  fs::copy_file(dir.path() / "x_000001.bin", dir.path() / "x_000002.bin");
  EXPECT_EQ(list_shards((dir.path() / "x_*.bin").string(), "data.val_glob").size(), 2u);
}

TEST(ShardGlob, RecursiveWildcardIsRefused) {
  TempDir dir;
  fs::create_directories(dir.path() / "a" / "b");
  write_shard(dir.path() / "a" / "x_1.bin", std::vector<uint16_t>(4, 1));
  write_shard(dir.path() / "a" / "b" / "x_2.bin", std::vector<uint16_t>(4, 1));
  // glob(3) would match a/x_1.bin only; upstream's Path.glob both.
  const std::string pattern = (dir.path() / "**" / "x_*.bin").string();
  const std::string e = error_of([&] { list_shards(pattern, "data.train_glob"); });
  EXPECT_NE(e.find("data.train_glob: '" + pattern + "' uses **"), std::string::npos) << e;
}

TEST(ShardGlob, UnreadableDirectoryIsAnErrorNotAnEmptyMatch) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any directory";
  TempDir dir;
  fs::create_directories(dir.path() / "locked");
  write_shard(dir.path() / "locked" / "x.bin", std::vector<uint16_t>(4, 1));
  fs::permissions(dir.path() / "locked", fs::perms::none);
  const std::string e = error_of([&] { list_shards((dir.path() / "locked" / "*.bin").string(), "data.train_glob"); });
  fs::permissions(dir.path() / "locked", fs::perms::owner_all);
  EXPECT_NE(e.find("data.train_glob: cannot match"), std::string::npos) << e;
  EXPECT_NE(e.find("Permission denied"), std::string::npos) << e;
}
