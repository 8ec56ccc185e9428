// core/safetensors.h: round trip of random tensors of every dtype width, the byte layout
// the format prescribes (checked by decoding the header by hand, independently of the
// reader), and every malformation the reader must refuse with the file's name: truncation
// at each region, a bad header, overlapping / holed / out-of-range offsets, a shape that
// does not fill its bytes, a duplicate name, a flipped data byte (CRC).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/safetensors.h"
#include "test_support.h"

namespace speedrun {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "speedrun-st-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    rng_.seed(test::process_seed("Safetensors"));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::vector<char> read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  void write_bytes(const fs::path& p, const std::vector<char>& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
  }
  // A raw file from a header JSON and a data buffer (for malformed files).
  fs::path raw_file(const std::string& name, const std::string& header, size_t data_bytes) {
    std::vector<char> b(8 + header.size() + data_bytes, 'x');
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(n >> (8 * i));
    std::memcpy(b.data() + 8, header.data(), header.size());
    write_bytes(dir_ / name, b);
    return dir_ / name;
  }
  // The message of the UserError open() throws (fails the test when it does not throw).
  std::string open_error(const fs::path& p) {
    try {
      SafetensorsFile::open(p);
    } catch (const UserError& e) {
      return e.what();
    }
    ADD_FAILURE() << p << " opened, expected a UserError";
    return "";
  }
  fs::path dir_;
  std::mt19937_64 rng_;
};

TEST_F(SafetensorsTest, RoundTripsRandomTensorsAndMetadata) {
  std::uniform_real_distribution<float> f(-3.f, 3.f);
  std::vector<float> a(3 * 5 * 7);
  for (auto& x : a) x = f(rng_);
  std::vector<double> b(11);
  for (auto& x : b) x = static_cast<double>(f(rng_)) * 1e-3;
  std::vector<int64_t> c(4);
  for (auto& x : c) x = static_cast<int64_t>(rng_());
  std::vector<uint8_t> d(13);  // odd size: the next tensor starts unaligned, as the format allows
  for (auto& x : d) x = static_cast<uint8_t>(rng_());
  std::vector<uint16_t> e(6);
  for (auto& x : e) x = static_cast<uint16_t>(rng_());
  const fs::path p = dir_ / "t.safetensors";
  write_safetensors(p,
                    {{"blocks.0.attn.q.weight", "F32", {3, 5, 7}, a.data(), a.size() * 4},
                     {"b", "F64", {11}, b.data(), b.size() * 8},
                     {"c", "I64", {2, 2}, c.data(), c.size() * 8},
                     {"d", "U8", {13}, d.data(), d.size()},
                     {"e", "BF16", {6}, e.data(), e.size() * 2},
                     {"empty", "F32", {0, 4}, nullptr, 0},
                     {"scalar", "F32", {}, a.data(), 4}},
                    {{"config", "{\"a\": 1}"}, {"step", "42"}});
  const SafetensorsFile file = SafetensorsFile::open(p);
  EXPECT_EQ(file.metadata_at("config"), "{\"a\": 1}");
  EXPECT_EQ(file.metadata_at("step"), "42");
  EXPECT_EQ(file.names(), (std::vector<std::string>{"blocks.0.attn.q.weight", "b", "c", "d", "e", "empty", "scalar"}));
  std::vector<float> a2(a.size(), std::nanf(""));
  file.read_into("blocks.0.attn.q.weight", "F32", {3, 5, 7}, a2.data());
  EXPECT_EQ(0, std::memcmp(a.data(), a2.data(), a.size() * 4));
  EXPECT_EQ(0, std::memcmp(b.data(), file.tensor("b").data, b.size() * 8));
  EXPECT_EQ(0, std::memcmp(c.data(), file.tensor("c").data, c.size() * 8));
  EXPECT_EQ(0, std::memcmp(d.data(), file.tensor("d").data, d.size()));
  EXPECT_EQ(0, std::memcmp(e.data(), file.tensor("e").data, e.size() * 2));
  EXPECT_EQ(file.tensor("empty").numel(), 0);
  EXPECT_EQ(file.tensor("scalar").numel(), 1);
  // Asking for the wrong dtype or shape names the file, the tensor and both.
  try {
    file.read_into("b", "F32", {11}, a2.data());
    ADD_FAILURE() << "read_into accepted a dtype mismatch";
  } catch (const UserError& err) {
    EXPECT_NE(std::string(err.what()).find("tensor b is F64 [11], expected F32 [11]"), std::string::npos) << err.what();
  }
  EXPECT_THROW(file.tensor("missing"), UserError);
  EXPECT_THROW(file.metadata_at("missing"), UserError);
}

// The bytes on disk follow the format, decoded here by hand: length prefix, JSON header
// padded with spaces to 8 bytes, then each tensor's bytes at its offsets.
TEST_F(SafetensorsTest, BytesOnDiskFollowTheFormat) {
  std::vector<float> a(10);
  for (auto& x : a) x = std::uniform_real_distribution<float>(-1, 1)(rng_);
  const fs::path p = dir_ / "f.safetensors";
  write_safetensors(p, {{"w", "F32", {2, 5}, a.data(), 40}}, {{"k", "v"}});
  const std::vector<char> bytes = read_bytes(p);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 40);
  const auto header = nlohmann::json::parse(std::string(bytes.data() + 8, n));
  EXPECT_EQ(header["__metadata__"]["k"], "v");
  EXPECT_EQ(header["w"]["dtype"], "F32");
  EXPECT_EQ(header["w"]["shape"], nlohmann::json({2, 5}));
  EXPECT_EQ(header["w"]["data_offsets"], nlohmann::json({0, 40}));
  EXPECT_EQ(0, std::memcmp(bytes.data() + 8 + n, a.data(), 40));
}

TEST_F(SafetensorsTest, TruncationAnywhereIsRefusedNamingTheFile) {
  std::vector<float> a(64);
  for (auto& x : a) x = std::uniform_real_distribution<float>(-1, 1)(rng_);
  const fs::path p = dir_ / "full.safetensors";
  write_safetensors(p, {{"x", "F32", {64}, a.data(), 256}, {"y", "F32", {8}, a.data(), 32}});
  const std::vector<char> bytes = read_bytes(p);
  // Every cut: inside the length field, inside the header, inside each tensor, one byte short.
  for (size_t keep : {size_t{0}, size_t{5}, size_t{8}, size_t{20}, bytes.size() - 200, bytes.size() - 32,
                      bytes.size() - 1}) {
    const fs::path cut = dir_ / ("cut" + std::to_string(keep) + ".safetensors");
    write_bytes(cut, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    const std::string msg = open_error(cut);
    EXPECT_NE(msg.find(cut.string()), std::string::npos) << "cut at " << keep << ": " << msg;
  }
  // Negative control: the uncut bytes, written the same way, open.
  const fs::path whole = dir_ / "whole.safetensors";
  write_bytes(whole, bytes);
  EXPECT_NO_THROW(SafetensorsFile::open(whole));
  EXPECT_NE(open_error(dir_ / "absent.safetensors").find("cannot read"), std::string::npos);
}

TEST_F(SafetensorsTest, AFlippedDataByteIsCaughtByTheCrc) {
  std::vector<float> a(100);
  for (auto& x : a) x = std::uniform_real_distribution<float>(-1, 1)(rng_);
  const fs::path p = dir_ / "c.safetensors";
  write_safetensors(p, {{"first", "F32", {50}, a.data(), 200}, {"second", "F32", {50}, a.data() + 50, 200}});
  std::vector<char> bytes = read_bytes(p);
  const size_t at = bytes.size() - 1 - std::uniform_int_distribution<size_t>(0, 199)(rng_);  // inside "second"
  bytes[at] = static_cast<char>(bytes[at] ^ (1 << std::uniform_int_distribution<int>(0, 7)(rng_)));
  write_bytes(p, bytes);
  const std::string msg = open_error(p);
  EXPECT_NE(msg.find("tensor second is corrupted"), std::string::npos) << msg;
  EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
}

TEST_F(SafetensorsTest, MalformedHeadersAreRefusedWithTheReason) {
  struct Case {
    const char* header;
    size_t data;
    const char* expect;
  };
  const Case cases[] = {
      {"not json", 0, "not JSON"},
      {"[1, 2]", 0, "not a JSON object"},
      {R"({"x": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}})", 4, "unknown dtype F99"},
      {R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 4, "does not fill"},
      {R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4, "non-negative"},
      {R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}})", 4, "outside"},
      {R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", 4, "outside"},
      {R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "y": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
       4, "share bytes"},
      {R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8, "belong to no tensor"},
      {R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 8, "trailing bytes"},
      {R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
       4, "names x twice"},
      {R"({"x": {"dtype": "F32", "shape": [1]}})", 4, "expected"},
      {R"({"__metadata__": {"k": 1}})", 0, "not a string"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const fs::path p = raw_file("m" + std::to_string(i++) + ".safetensors", c.header, c.data);
    const std::string msg = open_error(p);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.header << " -> " << msg;
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
  }
  // Negative control: a well-formed file from another tool (no CRC entry) opens.
  const fs::path ok = raw_file("ok.safetensors", R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 4);
  EXPECT_NO_THROW(SafetensorsFile::open(ok));
  // A huge length field does not make the reader allocate it.
  std::vector<char> huge(16, 0);
  huge[7] = 0x7f;
  write_bytes(dir_ / "huge.safetensors", huge);
  EXPECT_NE(open_error(dir_ / "huge.safetensors").find("header length"), std::string::npos);
}

}  // namespace
}  // namespace speedrun
