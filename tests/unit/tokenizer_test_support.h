// Helpers shared by the tokenizer tests: the repository's GPT-2 files, ../shared data,
// seeded random generators and temporary directories.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>

#include "data/tokenizer.h"

namespace speedrun::testing {

inline std::filesystem::path repo_gpt2_dir() { return std::filesystem::path(SPEEDRUN_SOURCE_DIR) / "data" / "gpt2"; }
inline std::filesystem::path shared_dir() { return std::filesystem::path(SPEEDRUN_SHARED_DIR); }

// The GPT-2 tokenizer from the repository's data/gpt2, loaded once per test binary.
inline const data::Gpt2Tokenizer& gpt2() {
  static const data::Gpt2Tokenizer tokenizer =
      data::Gpt2Tokenizer::load(repo_gpt2_dir() / "encoder.json", repo_gpt2_dir() / "vocab.bpe");
  return tokenizer;
}

// A generator seeded afresh on every run (SPEEDRUN_TEST_SEED reproduces a run); the
// seed is printed so a failure can be replayed.
inline std::mt19937_64 seeded_rng(const char* test_name) {
  uint64_t seed = 0;
  if (const char* s = std::getenv("SPEEDRUN_TEST_SEED"); s && *s)
    seed = std::strtoull(s, nullptr, 10);
  else
    seed = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  std::cout << "[ seed     ] " << test_name << ": SPEEDRUN_TEST_SEED=" << seed << "\n";
  return std::mt19937_64(seed);
}

inline std::string read_binary_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A fresh directory under the system temp dir, removed at the end of the scope.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("speedrun-tok-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

}  // namespace speedrun::testing
