// core/files.h: AtomicFile (complete or absent, the old file untouched on any failure,
// no temporary left) and AppendFile (whole lines, checked writes). Failures are made by
// the test-only SPEEDRUN_TEST_FAIL_WRITE(_AT) hook and, where the kernel offers one, a
// real failure (/dev/full, a directory in the way, a missing parent).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "core/npy.h"

namespace speedrun {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "speedrun-files-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Sets the fault-injection variables for one scope.
class InjectedFault {
 public:
  InjectedFault(const std::string& name, const std::string& stage) {
    setenv("SPEEDRUN_TEST_FAIL_WRITE", name.c_str(), 1);
    setenv("SPEEDRUN_TEST_FAIL_WRITE_AT", stage.c_str(), 1);
  }
  ~InjectedFault() {
    unsetenv("SPEEDRUN_TEST_FAIL_WRITE");
    unsetenv("SPEEDRUN_TEST_FAIL_WRITE_AT");
  }
};

std::string random_text(size_t n) {
  std::mt19937 rng(std::random_device{}());
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Runs f, expecting a UserError whose message holds every fragment; returns the message.
template <class F>
std::string expect_user_error(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
  } catch (const UserError& e) {
    const std::string msg = e.what();
    for (const std::string& frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << msg << "\nlacks " << frag;
    return msg;
  }
  ADD_FAILURE() << "no UserError";
  return {};
}

TEST(AtomicFile, WritesTheWholeContentsAndLeavesNoTemporary) {
  TempDir dir;
  const fs::path p = dir.path() / "summary.json";
  const std::string text = random_text(100000);
  write_text_file_atomic(p, text);
  EXPECT_EQ(slurp(p), text);
  const std::string second = random_text(777);
  write_text_file_atomic(p, second);  // replaces the earlier file
  EXPECT_EQ(slurp(p), second);
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"summary.json"});
}

TEST(AtomicFile, EveryInjectedFailureNamesThePathAndKeepsTheOldFile) {
  // (stage, the reason the message must give)
  const std::vector<std::pair<std::string, std::string>> stages = {
      {"write", "No space left on device"}, {"sync", "No space left on device"},
      {"close", "No space left on device"}, {"rename", "Input/output error"}};
  for (const auto& [stage, reason] : stages) {
    SCOPED_TRACE(stage);
    TempDir dir;
    const fs::path p = dir.path() / "norm2.gains.npy";
    const std::string old = random_text(50);
    write_text_file_atomic(p, old);  // what a user (or an earlier run) had there
    {
      InjectedFault fault("gains", stage);
      expect_user_error([&] { write_text_file_atomic(p, random_text(4096)); }, {p.string(), reason});
    }
    EXPECT_EQ(slurp(p), old);
    EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"norm2.gains.npy"});  // no temporary left
  }
}

TEST(AtomicFile, InjectedFailureOnlyHitsMatchingNames) {
  // Negative control for the hook: another file name is written normally.
  TempDir dir;
  InjectedFault fault("gains", "write");
  write_text_file_atomic(dir.path() / "embed.weight.npy", "x");
  EXPECT_EQ(slurp(dir.path() / "embed.weight.npy"), "x");
  EXPECT_THROW(write_text_file_atomic(dir.path() / "norm2.gains.npy", "x"), UserError);
  EXPECT_FALSE(fs::exists(dir.path() / "norm2.gains.npy"));
}

TEST(AtomicFile, WriterExceptionLeavesTheOldFileAndNoTemporary) {
  TempDir dir;
  const fs::path p = dir.path() / "config.json";
  write_text_file_atomic(p, "precious");
  EXPECT_THROW(write_file_atomic(p,
                                 [](AtomicFile& f) {
                                   f.write(random_text(1000));
                                   throw std::runtime_error("writer failed midway");
                                 }),
               std::runtime_error);
  EXPECT_EQ(slurp(p), "precious");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"config.json"});
}

TEST(AtomicFile, RealRenameFailureOverADirectory) {
  TempDir dir;
  const fs::path p = dir.path() / "results.json";
  fs::create_directories(p / "inside");
  expect_user_error([&] { write_text_file_atomic(p, "x"); }, {p.string(), "Is a directory", "renaming"});
  EXPECT_TRUE(fs::is_directory(p / "inside"));
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"results.json"});
}

TEST(AtomicFile, MissingParentDirectoryIsNamed) {
  TempDir dir;
  const fs::path p = dir.path() / "missing" / "bench.json";
  expect_user_error([&] { write_text_file_atomic(p, "x"); }, {p.string(), "No such file or directory"});
}

TEST(AtomicFile, TemporaryNamesAreRecognised) {
  TempDir dir;
  const fs::path p = dir.path() / "failed.json";
  AtomicFile f(p);  // its temporary exists now
  std::vector<std::string> names = entries(dir.path());
  ASSERT_EQ(names.size(), 1u);
  EXPECT_TRUE(is_atomic_temporary(names[0])) << names[0];
  EXPECT_EQ(names[0].rfind(".failed.json.tmp-", 0), 0u) << names[0];
  EXPECT_FALSE(fs::exists(p));  // nothing under the final name before commit()
  f.write("{}");
  f.commit();
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"failed.json"});
  for (const char* not_ours : {"failed.json", ".hidden", "x.json.tmp-1-2", ".x.json.tmp-", ".x.json.tmp-12",
                               ".x.json.tmp-12-", ".x.json.tmp-a-1", "notes.txt", ".tmp-1-2"})
    EXPECT_FALSE(is_atomic_temporary(not_ours)) << not_ours;
  EXPECT_TRUE(is_atomic_temporary(".embed.weight.npy.tmp-4242-17"));
}

TEST(AtomicFile, TemporariesAreInvisibleToDataGlobs) {
  // A tokenizer killed mid-shard must not hand a partial shard to the next training run.
  TempDir dir;
  write_text_file_atomic(dir.path() / "t_train_000001.bin", "x");
  AtomicFile pending(dir.path() / "t_train_000002.bin");
  pending.write("partial");
  EXPECT_EQ(entries(dir.path()).size(), 2u);
  for (const std::string pattern : {"/*", "/t_train_*", "/*.bin*", "/*_train_*"})
    EXPECT_EQ(glob_sorted(dir.path().string() + pattern), std::vector<fs::path>{dir.path() / "t_train_000001.bin"})
        << pattern;
}

TEST(AtomicFile, NpyRoundTripAndFailedNpyIsAbsent) {
  TempDir dir;
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  std::vector<float> values(3 * 257);
  for (float& v : values) v = normal(rng);
  const Tensor t = Tensor::of(values.data(), {3, 257});
  write_npy(dir.path() / "embed.weight.npy", t);
  const NpyArray a = read_npy(dir.path() / "embed.weight.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 257}));
  ASSERT_EQ(a.numel(), 3 * 257);
  for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(a.as<float>()[i], values[i]) << i;
  InjectedFault fault("embed", "close");
  expect_user_error([&] { write_npy(dir.path() / "embed2.weight.npy", t); }, {"embed2.weight.npy", "at close"});
  EXPECT_FALSE(fs::exists(dir.path() / "embed2.weight.npy"));
}

TEST(AppendFile, WholeLinesAndAnInjectedFailureIsCutBack) {
  TempDir dir;
  const fs::path p = dir.path() / "metrics.jsonl";
  AppendFile f;
  f.open(p);
  const std::string first = random_text(40), second = random_text(4000);
  f.append_line(first);
  f.sync();
  {
    InjectedFault fault("metrics", "write");
    expect_user_error([&] { f.append_line(second); }, {p.string(), "No space left on device"});
  }
  // The injected write stored half the line; it was cut back off.
  EXPECT_EQ(slurp(p), first + "\n");
  f.append_line(second);
  f.close();
  EXPECT_EQ(slurp(p), first + "\n" + second + "\n");
  AppendFile again;  // reopening appends
  again.open(p);
  again.append_line("3");
  again.close();
  EXPECT_EQ(slurp(p), first + "\n" + second + "\n3\n");
}

TEST(AppendFile, RealFullDeviceIsReported) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "skipped: no /dev/full on this system";
  AppendFile f;
  f.open("/dev/full");
  expect_user_error([&] { f.append_line("a record"); }, {"/dev/full", "No space left on device"});
}

TEST(AppendFile, InjectedCloseAndSyncFailuresAreReported) {
  TempDir dir;
  const fs::path p = dir.path() / "log.txt";
  AppendFile f;
  f.open(p);
  f.append_line("x");
  {
    InjectedFault fault("log.txt", "sync");
    expect_user_error([&] { f.sync(); }, {p.string(), "at fsync"});
  }
  InjectedFault fault("log.txt", "close");
  expect_user_error([&] { f.close(); }, {p.string(), "at close"});
}

}  // namespace
}  // namespace speedrun
