// GPT-2 tokenizer: reference ids from tiktoken, round trips on arbitrary bytes,
// pre-tokenization and its safe split points, the two BPE algorithms, parallel encode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/bpe.h"
#include "data/bpe_vocabulary.h"
#include "data/parallel_encode.h"
#include "data/pretokenize.h"
#include "data/tokenizer.h"
#include "tokenizer_test_support.h"

namespace speedrun {
namespace {

using data::Gpt2Tokenizer;
using testing::gpt2;
using Ids = std::vector<uint16_t>;

// Fragments that exercise every branch of the scanner: contractions (and their
// upper-case non-matches), each character class, Unicode whitespace and digits, and
// malformed UTF-8 (stray continuation, overlong, truncated, surrogate, > U+10FFFF).
const std::string kFragments[] = {
    "a", "Z", "word", "The", "x", "7", "42", "3.14", " ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "\x0b",
    "\x1c", "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "!", "?!", "...", "-", "\"", "(",
    "<|endoftext|>", "\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x9a\x80", "\xd9\xa1\xd9\xa2", "\xe2\x85\xab",
    "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\xa8", "\xc2\x85", "\xe2\x80\x94", "\x80", "\xff", "\xc0\xaf", "\xe6\x97",
    "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf0\x9f", std::string("\0", 1)};

std::string random_text(std::mt19937_64& rng, size_t max_fragments) {
  std::string text;
  const size_t count = std::uniform_int_distribution<size_t>(0, max_fragments)(rng);
  std::uniform_int_distribution<size_t> pick(0, std::size(kFragments));  // last index = one random byte
  for (size_t i = 0; i < count; ++i) {
    const size_t k = pick(rng);
    if (k == std::size(kFragments))
      text.push_back(static_cast<char>(rng() & 0xFF));
    else
      text += kFragments[k];
  }
  return text;
}

std::string random_bytes(std::mt19937_64& rng, size_t max_length) {
  std::string bytes(std::uniform_int_distribution<size_t>(0, max_length)(rng), '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xFF);
  return bytes;
}

std::string shown(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// --------------------------------------------------------------------------------
// Reference ids

TEST(TokenizerReference, HelloWorld) {
  EXPECT_EQ(gpt2().encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(gpt2().encode("hello world"), (Ids{31373, 995}));
  EXPECT_EQ(gpt2().encode(""), Ids{});
}

TEST(TokenizerReference, VocabularyShape) {
  EXPECT_EQ(gpt2().vocab_size(), 50257u);
  EXPECT_EQ(gpt2().num_merges(), 50000u);
  ASSERT_TRUE(gpt2().end_of_text().has_value());
  EXPECT_EQ(*gpt2().end_of_text(), 50256);
}

TEST(TokenizerReference, EndOfTextTextIsPlainText) {
  const Ids ids = gpt2().encode("<|endoftext|>");
  EXPECT_EQ(ids, (Ids{27, 91, 437, 1659, 5239, 91, 29}));
  const Ids in_text = gpt2().encode("one<|endoftext|>two <|endoftext|>");
  EXPECT_EQ(std::count(in_text.begin(), in_text.end(), uint16_t{50256}), 0);
  EXPECT_EQ(gpt2().decode(Ids{50256}), "<|endoftext|>");
}

TEST(TokenizerReference, CasesFromTiktoken) {
  const auto path = testing::shared_dir() / "data" / "gpt2" / "reference_cases.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "skipped: " << path << " is absent";
  const nlohmann::json doc = nlohmann::json::parse(testing::read_binary_file(path));
  const auto& cases = doc.at("cases");
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const Ids expected = c.at("ids").get<Ids>();
    EXPECT_EQ(gpt2().encode(text), expected) << "text " << shown(text);
    EXPECT_EQ(gpt2().decode(expected), text) << "text " << shown(text);
  }
}

TEST(TokenizerReference, TinyShakespeareExactIds) {
  const auto dir = testing::shared_dir() / "data" / "tinyshakespeare";
  if (!std::filesystem::exists(dir / "input.txt") || !std::filesystem::exists(dir / "input.gpt2.u16"))
    GTEST_SKIP() << "skipped: " << dir << " (input.txt, input.gpt2.u16) is absent";
  const std::string text = testing::read_binary_file(dir / "input.txt");
  const std::string raw = testing::read_binary_file(dir / "input.gpt2.u16");
  Ids expected(raw.size() / 2);
  std::memcpy(expected.data(), raw.data(), expected.size() * 2);
  ASSERT_EQ(expected.size(), 338025u);
  const Ids ids = gpt2().encode(text);
  ASSERT_EQ(ids.size(), expected.size());
  const auto mismatch = std::mismatch(ids.begin(), ids.end(), expected.begin());
  EXPECT_TRUE(mismatch.first == ids.end()) << "first difference at token " << (mismatch.first - ids.begin());
  EXPECT_EQ(gpt2().decode(ids), text);
}

// --------------------------------------------------------------------------------
// Round trips

TEST(TokenizerRoundTrip, RandomBytes) {
  auto rng = testing::seeded_rng("TokenizerRoundTrip.RandomBytes");
  for (int i = 0; i < 2000; ++i) {
    const std::string bytes = random_bytes(rng, 300);
    const Ids ids = gpt2().encode(bytes);
    ASSERT_EQ(gpt2().decode(ids), bytes) << "input " << shown(bytes);
  }
}

TEST(TokenizerRoundTrip, RandomMixedText) {
  auto rng = testing::seeded_rng("TokenizerRoundTrip.RandomMixedText");
  for (int i = 0; i < 2000; ++i) {
    const std::string text = random_text(rng, 60);
    const Ids ids = gpt2().encode(text);
    ASSERT_EQ(gpt2().decode(ids), text) << "input " << shown(text);
    for (const uint16_t id : ids) ASSERT_NE(id, 50256) << "input " << shown(text);
  }
}

TEST(TokenizerRoundTrip, DecodeRejectsOutOfRangeIds) {
  try {
    gpt2().decode(Ids{15496, 50257});
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("50257"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("position 1"), std::string::npos) << e.what();
  }
}

// --------------------------------------------------------------------------------
// Pre-tokenization

TEST(TokenizerPretokenize, KnownSplits) {
  using Pieces = std::vector<std::string_view>;
  EXPECT_EQ(data::pretokenize("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(data::pretokenize("x  y"), (Pieces{"x", " ", " y"}));
  EXPECT_EQ(data::pretokenize("a\n\nb"), (Pieces{"a", "\n", "\n", "b"}));
  EXPECT_EQ(data::pretokenize("  \n  x"), (Pieces{"  \n ", " x"}));
  EXPECT_EQ(data::pretokenize("end   "), (Pieces{"end", "   "}));
  EXPECT_EQ(data::pretokenize("I'LL it's"), (Pieces{"I", "'", "LL", " it", "'s"}));
  EXPECT_EQ(data::pretokenize(" 's"), (Pieces{" '", "s"}));
  EXPECT_EQ(data::pretokenize("x.'s"), (Pieces{"x", ".'", "s"}));
  EXPECT_EQ(data::pretokenize("abc123 45x"), (Pieces{"abc", "123", " 45", "x"}));
  EXPECT_EQ(data::pretokenize("x\xc2\xa0y"), (Pieces{"x", "\xc2\xa0", "y"}));        // NBSP is \s
  EXPECT_EQ(data::pretokenize("x \xc2\xa0y"), (Pieces{"x", " ", "\xc2\xa0", "y"}));
  EXPECT_EQ(data::pretokenize("a\xff\xfe b"), (Pieces{"a", "\xff\xfe", " b"}));    // invalid bytes: other
  EXPECT_EQ(data::pretokenize(" \xff!x"), (Pieces{" \xff!", "x"}));
  EXPECT_EQ(data::pretokenize("\xe6\x97\xa5\xe6\x9c\xac"), (Pieces{"\xe6\x97\xa5\xe6\x9c\xac"}));  // letters
  EXPECT_EQ(data::pretokenize("\xe6\x97x"), (Pieces{"\xe6\x97", "x"}));  // truncated sequence: two others
  EXPECT_EQ(data::pretokenize("a\x1c b"), (Pieces{"a", "\x1c", " b"}));   // U+001C is not White_Space
}

TEST(TokenizerPretokenize, PiecesCoverTheInput) {
  auto rng = testing::seeded_rng("TokenizerPretokenize.PiecesCoverTheInput");
  for (int i = 0; i < 2000; ++i) {
    const std::string text = i % 2 ? random_text(rng, 60) : random_bytes(rng, 200);
    std::string joined;
    for (const std::string_view piece : data::pretokenize(text)) {
      ASSERT_FALSE(piece.empty());
      joined += piece;
    }
    ASSERT_EQ(joined, text);
  }
}

TEST(TokenizerPretokenize, SafeSplitPoints) {
  EXPECT_TRUE(data::is_safe_split_point("hello world", 5));
  EXPECT_FALSE(data::is_safe_split_point("hello world", 3));    // inside a word
  EXPECT_FALSE(data::is_safe_split_point("a  b", 2));           // the space follows whitespace
  EXPECT_FALSE(data::is_safe_split_point("\xc3\xa9 b", 2));     // previous character is not ASCII
  EXPECT_FALSE(data::is_safe_split_point(" b", 0));
  EXPECT_EQ(data::find_safe_split_point("ab  cd ef", 0), 2u);
  EXPECT_EQ(data::find_safe_split_point("ab  cd ef", 3), 6u);
  EXPECT_EQ(data::find_safe_split_point("ab  cd", 3), 6u);  // none: the end
}

// Cutting at every safe point must reproduce the whole text's pieces exactly.
TEST(TokenizerPretokenize, CuttingAtSafePointsKeepsThePieces) {
  auto rng = testing::seeded_rng("TokenizerPretokenize.CuttingAtSafePointsKeepsThePieces");
  int cuts = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string text = random_text(rng, 40);
    const auto whole = data::pretokenize(text);
    for (size_t p = 0; p < text.size(); ++p) {
      if (!data::is_safe_split_point(text, p)) continue;
      ++cuts;
      auto parts = data::pretokenize(std::string_view(text).substr(0, p));
      const auto rest = data::pretokenize(std::string_view(text).substr(p));
      parts.insert(parts.end(), rest.begin(), rest.end());
      ASSERT_EQ(parts.size(), whole.size()) << "cut at " << p << " of " << shown(text);
      for (size_t k = 0; k < whole.size(); ++k)
        ASSERT_EQ(parts[k], whole[k]) << "cut at " << p << " of " << shown(text);
    }
  }
  EXPECT_GT(cuts, 100);
}

// --------------------------------------------------------------------------------
// BPE

TEST(TokenizerBpe, HeapAgreesWithQuadratic) {
  const auto dir = testing::repo_gpt2_dir();
  const data::BpeVocabulary vocab = data::read_bpe_vocabulary(dir / "encoder.json", dir / "vocab.bpe");
  data::MergeTable merges;
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank)
    merges.add(vocab.merges[rank].left, vocab.merges[rank].right,
               {static_cast<uint32_t>(rank), vocab.merges[rank].merged});
  uint16_t byte_id[256];
  for (size_t id = 0; id < 256; ++id)
    byte_id[static_cast<uint8_t>(vocab.token_bytes[id][0])] = static_cast<uint16_t>(id);

  auto rng = testing::seeded_rng("TokenizerBpe.HeapAgreesWithQuadratic");
  const std::string letters = "etaoinshrdlucmfwypvbgkqjxz";
  for (int i = 0; i < 300; ++i) {
    // Long runs of letters (with repeats), as one piece of BPE input.
    std::string piece(std::uniform_int_distribution<size_t>(20, 400)(rng), ' ');
    for (char& c : piece) c = letters[std::min<size_t>(std::geometric_distribution<size_t>(0.2)(rng), 25)];
    Ids a, b;
    for (const char c : piece) a.push_back(byte_id[static_cast<uint8_t>(c)]);
    b = a;
    data::bpe_merge_quadratic(merges, a);
    data::bpe_merge_heap(merges, b);
    ASSERT_EQ(a, b) << "piece " << piece;
    ASSERT_LT(a.size(), piece.size());  // something merged
  }
}

TEST(TokenizerBpe, LongPieceWithoutSpaces) {
  // 300,000 bytes in one piece: must take the O(n log n) path, not O(n^2).
  std::string text;
  for (int i = 0; i < 100000; ++i) text += "the";
  const Ids ids = gpt2().encode(text);
  EXPECT_LT(ids.size(), text.size() / 2);
  EXPECT_EQ(gpt2().decode(ids), text);
}

// --------------------------------------------------------------------------------
// Parallel encode

TEST(TokenizerParallel, TinyShakespeareInManyChunks) {
  const auto dir = testing::shared_dir() / "data" / "tinyshakespeare";
  if (!std::filesystem::exists(dir / "input.gpt2.u16")) GTEST_SKIP() << "skipped: " << dir << " is absent";
  const std::string text = testing::read_binary_file(dir / "input.txt");
  const std::string raw = testing::read_binary_file(dir / "input.gpt2.u16");
  Ids expected(raw.size() / 2);
  std::memcpy(expected.data(), raw.data(), expected.size() * 2);

  const auto chunks = data::split_into_chunks(text, 1000);
  EXPECT_GT(chunks.size(), 1000u);
  for (size_t i = 0; i + 1 < chunks.size(); ++i) ASSERT_EQ(chunks[i].second, chunks[i + 1].first);
  const std::string_view docs[] = {text};
  for (const int threads : {1, 3}) {
    const auto ids = data::encode_documents(gpt2(), docs, threads, 1000);
    ASSERT_EQ(ids.size(), 1u);
    EXPECT_TRUE(ids[0] == expected) << threads << " threads";
  }
}

TEST(TokenizerParallel, AnyThreadCountAndChunkSizeGivesTheWholeEncoding) {
  auto rng = testing::seeded_rng("TokenizerParallel.AnyThreadCountAndChunkSizeGivesTheWholeEncoding");
  std::vector<std::string> texts;
  for (int i = 0; i < 40; ++i) texts.push_back(random_text(rng, 400));
  texts.push_back("");
  const std::vector<std::string_view> docs(texts.begin(), texts.end());
  for (const auto& [threads, chunk] : {std::pair{1, size_t{7}}, std::pair{4, size_t{1}}, std::pair{2, size_t{64}}}) {
    const auto ids = data::encode_documents(gpt2(), docs, threads, chunk);
    ASSERT_EQ(ids.size(), docs.size());
    for (size_t d = 0; d < docs.size(); ++d)
      ASSERT_EQ(ids[d], gpt2().encode(docs[d])) << "document " << shown(texts[d]) << ", " << threads
                                                << " threads, chunks of " << chunk;
  }
}

}  // namespace
}  // namespace speedrun
