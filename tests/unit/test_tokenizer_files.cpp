// Reading tokenizer files: every kind of bad encoder.json / vocab.bpe is a UserError
// that names the file; and where the default files are found.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/byte_unicode.h"
#include "data/tokenizer.h"
#include "data/tokenizer_files.h"
#include "tokenizer_test_support.h"

namespace speedrun {
namespace {

namespace fs = std::filesystem;
using data::Gpt2Tokenizer;

// A tiny valid byte-level BPE: the 256 byte tokens (id = byte value) and three merges,
// "Ġ t" -> "Ġt" (256), "h e" -> "he" (257), "Ġt he" -> "Ġthe" (258). Each test breaks
// one thing about it.
struct MiniTokenizerFiles {
  nlohmann::ordered_json encoder = nlohmann::ordered_json::object();
  std::vector<std::string> vocab_lines = {"#version: 0.2", "\xc4\xa0 t", "h e", "\xc4\xa0t he"};
  std::string encoder_text_override;  // written instead of `encoder` when set
  std::string vocab_text_override;

  MiniTokenizerFiles() {
    for (int b = 0; b < 256; ++b) encoder[data::bytes_to_byte_level(std::string(1, static_cast<char>(b)))] = b;
    encoder["\xc4\xa0t"] = 256;
    encoder["he"] = 257;
    encoder["\xc4\xa0the"] = 258;
  }

  Gpt2Tokenizer load(const fs::path& dir) const {
    testing::write_file(dir / "encoder.json", encoder_text_override.empty() ? encoder.dump() : encoder_text_override);
    std::string vocab;
    for (const std::string& line : vocab_lines) vocab += line + "\n";
    testing::write_file(dir / "vocab.bpe", vocab_text_override.empty() ? vocab : vocab_text_override);
    return Gpt2Tokenizer::load(dir / "encoder.json", dir / "vocab.bpe");
  }
};

// Loading must throw a UserError whose message names `file` (a file name in the temp
// dir, or a full path) and contains `fragment`.
void expect_load_error(const std::function<void(MiniTokenizerFiles&)>& damage, const std::string& file,
                       const std::string& fragment) {
  testing::TempDir dir;
  MiniTokenizerFiles files;
  damage(files);
  try {
    files.load(dir.path());
    ADD_FAILURE() << "expected a UserError containing \"" << fragment << "\"";
  } catch (const UserError& e) {
    const std::string message = e.what();
    const std::string named = file.find('/') == std::string::npos ? (dir.path() / file).string() : file;
    EXPECT_NE(message.find(named), std::string::npos) << "message does not name " << named << ": " << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << "message lacks \"" << fragment << "\": " << message;
  }
}

TEST(TokenizerBadFiles, TheMiniTokenizerIsValid) {
  testing::TempDir dir;
  const Gpt2Tokenizer tok = MiniTokenizerFiles().load(dir.path());
  EXPECT_EQ(tok.vocab_size(), 259u);
  EXPECT_EQ(tok.num_merges(), 3u);
  EXPECT_FALSE(tok.end_of_text().has_value());
  EXPECT_EQ(tok.encode(" the"), (std::vector<uint16_t>{258}));
  EXPECT_EQ(tok.encode("the"), (std::vector<uint16_t>{'t', 257}));
  EXPECT_EQ(tok.decode(tok.encode("a the\xff")), "a the\xff");
}

TEST(TokenizerBadFiles, MissingFiles) {
  testing::TempDir dir;
  const fs::path missing = dir.path() / "nope" / "encoder.json";
  const fs::path repo_vocab = testing::repo_gpt2_dir() / "vocab.bpe";
  try {
    Gpt2Tokenizer::load(missing, repo_vocab);
    ADD_FAILURE() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  const fs::path missing_vocab = dir.path() / "vocab.bpe";
  try {
    Gpt2Tokenizer::load(testing::repo_gpt2_dir() / "encoder.json", missing_vocab);
    ADD_FAILURE() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(missing_vocab.string()), std::string::npos) << e.what();
  }
  try {
    Gpt2Tokenizer::load(dir.path(), repo_vocab);  // a directory
    ADD_FAILURE() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("directory"), std::string::npos) << e.what();
  }
}

TEST(TokenizerBadFiles, EncoderJson) {
  expect_load_error([](auto& f) { f.encoder_text_override = "{\"a\": 1,"; }, "encoder.json", "not valid JSON");
  expect_load_error([](auto& f) { f.encoder_text_override = "{\"\xff\": 0}"; }, "encoder.json", "not valid JSON");
  expect_load_error([](auto& f) { f.encoder_text_override = "[1, 2]"; }, "encoder.json", "expected a JSON object");
  expect_load_error([](auto& f) { f.encoder["he"] = "257"; }, "encoder.json", "expected an integer");
  expect_load_error([](auto& f) { f.encoder["he"] = 257.5; }, "encoder.json", "expected an integer");
  expect_load_error([](auto& f) { f.encoder["he"] = -1; }, "encoder.json", "must be exactly 0..258");
  expect_load_error([](auto& f) { f.encoder["he"] = 9999; }, "encoder.json", "must be exactly 0..258");
  expect_load_error([](auto& f) { f.encoder["he"] = 256; }, "encoder.json", "both have id 256");
  // A token written twice: the parser alone would keep the second id and drop the first.
  expect_load_error(
      [](MiniTokenizerFiles& f) {
        std::string text = f.encoder.dump(1);  // one key per line
        text.insert(text.rfind('}'), ",\n\"he\": " + std::to_string(f.encoder["he"].get<int>()) + "\n");
        f.encoder_text_override = text;
      },
      "encoder.json", "token \"he\" appears twice (first at line");
  // A raw space is not in the byte-level alphabet (GPT-2 spells it "Ġ").
  expect_load_error(
      [](auto& f) {
        f.encoder.erase("\xc4\xa0the");
        f.encoder[" the"] = 258;
      },
      "encoder.json", "is not a byte-level string");
  expect_load_error(
      [](auto& f) {
        f.encoder.erase("A");
        f.encoder["AA"] = 65;
      },
      "encoder.json", "no token for byte 0x41");
  expect_load_error([](auto& f) { f.encoder["<|endoftext|>"] = 259; }, "encoder.json", "expected 50256");
  expect_load_error(
      [](auto& f) {
        std::string json = "{";  // built by hand: ordered_json inserts in O(n)
        for (int i = 0; i <= 65536; ++i) json += (i ? ",\"t" : "\"t") + std::to_string(i) + "\":" + std::to_string(i);
        f.encoder_text_override = json + "}";
      },
      "encoder.json", "at most 65536 tokens");
}

TEST(TokenizerBadFiles, VocabBpe) {
  expect_load_error([](auto& f) { f.vocab_text_override = " "; }, "vocab.bpe", "expected the header");
  expect_load_error([](auto& f) { f.vocab_lines.erase(f.vocab_lines.begin()); }, "vocab.bpe", "expected the header");
  expect_load_error([](auto& f) { f.vocab_lines[2] = "he"; }, "vocab.bpe", "line 3: expected a merge");
  expect_load_error([](auto& f) { f.vocab_lines[2] = "h e x"; }, "vocab.bpe", "two tokens separated by one space");
  expect_load_error([](auto& f) { f.vocab_lines[2] = ""; }, "vocab.bpe", "line 3: expected a merge");
  expect_load_error([](auto& f) { f.vocab_lines[2] = "h zz"; }, "vocab.bpe", "\"zz\" is not a token");
  expect_load_error([](auto& f) { f.vocab_lines[2] = "t h"; }, "vocab.bpe", "the merged token \"th\" is not a token");
  expect_load_error([](auto& f) { f.vocab_lines.insert(f.vocab_lines.begin() + 3, "h e"); }, "vocab.bpe",
                    "repeats the merge on line 3");
  expect_load_error([](auto& f) { std::swap(f.vocab_lines[2], f.vocab_lines[3]); }, "vocab.bpe",
                    "no earlier merge creates");
  // Counts: a token that no merge creates.
  expect_load_error([](auto& f) { f.vocab_lines.pop_back(); }, "vocab.bpe", "neither a byte nor created by a merge");
  expect_load_error([](auto& f) { f.vocab_lines.pop_back(); }, "encoder.json", "has 259 tokens");
}

// --------------------------------------------------------------------------------

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(TokenizerDefaultFiles, DataDirComesFirst) {
  testing::TempDir dir;
  fs::create_directories(dir.path() / "gpt2");
  fs::copy_file(testing::repo_gpt2_dir() / "encoder.json", dir.path() / "gpt2" / "encoder.json");
  fs::copy_file(testing::repo_gpt2_dir() / "vocab.bpe", dir.path() / "gpt2" / "vocab.bpe");
  ScopedEnv env("SPEEDRUN_DATA_DIR", dir.path().string());
  const data::TokenizerFiles files = data::find_default_tokenizer_files();
  EXPECT_EQ(files.encoder_json, dir.path() / "gpt2" / "encoder.json");
  EXPECT_EQ(files.vocab_bpe, dir.path() / "gpt2" / "vocab.bpe");
}

TEST(TokenizerDefaultFiles, IncompleteDataDirFallsBackToTheSourceTree) {
  testing::TempDir dir;
  fs::create_directories(dir.path() / "gpt2");
  testing::write_file(dir.path() / "gpt2" / "encoder.json", "{}");  // vocab.bpe missing
  ScopedEnv env("SPEEDRUN_DATA_DIR", dir.path().string());
  const data::TokenizerFiles files = data::find_default_tokenizer_files();
  EXPECT_TRUE(fs::equivalent(files.encoder_json, testing::repo_gpt2_dir() / "encoder.json")) << files.encoder_json;
  EXPECT_TRUE(fs::equivalent(files.vocab_bpe, testing::repo_gpt2_dir() / "vocab.bpe")) << files.vocab_bpe;
  EXPECT_EQ(Gpt2Tokenizer::load_default().encode("Hello world"), (std::vector<uint16_t>{15496, 995}));
}

}  // namespace
}  // namespace speedrun
