// Token shards (reader, writer, corrupt files) and the Track 3 loader.
#include <gtest/gtest.h>

#include <unistd.h>

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

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

std::mt19937 seeded_rng() {
  const unsigned seed = std::random_device{}();
  std::printf("random seed %u\n", seed);
  return std::mt19937(seed);
}

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
  for (int world : {1, 2, 4}) {
    for (int r = 0; r < world; ++r) {
      const Batch v = load_validation_set(shards, 160, r, world, 50257);
      const int64_t local = 160 / world;
      ASSERT_EQ(v.inputs.size(), static_cast<size_t>(local));
      for (int64_t i = 0; i < local; ++i) {
        ASSERT_EQ(v.inputs[i], r * local + i);  // crosses into the second shard
        ASSERT_EQ(v.targets[i], r * local + i + 1);
      }
    }
  }
  EXPECT_NE(error_of([&] { load_validation_set(shards, 200, 0, 1, 50257); }).find("hold 200 tokens"),
            std::string::npos);
}
