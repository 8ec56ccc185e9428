// data/utf8_stream.h: what `speedrun sample` prints is valid UTF-8 whatever the token
// boundaries. Expected values of the fixed cases are Python's bytes.decode("utf-8",
// "replace") (the maximal-subpart rule), e.g. b"\xe2\x82A" -> "\ufffdA",
// b"\xf0\x80" -> "\ufffd\ufffd". Random byte strings, pushed in random chunks, give the
// same text as pushed whole, and that text is well-formed.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "data/utf8.h"
#include "data/utf8_stream.h"
#include "test_support.h"

namespace speedrun::data {
namespace {

const std::string R = "\xEF\xBF\xBD";  // U+FFFD

std::string whole(const std::string& bytes) {
  Utf8Stream s;
  std::string text = s.push(bytes);  // before finish(): the operands of + are unsequenced
  return text + s.finish();
}

bool well_formed(const std::string& text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    uint32_t cp = 0;
    const int n = decode_utf8(p, end, &cp);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

TEST(Utf8Stream, ReplacesMaximalSubpartsAsPythonDoes) {
  EXPECT_EQ(whole("\xE2\x82" "A"), R + "A");
  EXPECT_EQ(whole("\xF0\x80"), R + R);
  EXPECT_EQ(whole("a\xED\xA0\x80" "b"), "a" + R + R + R + "b");
  EXPECT_EQ(whole("\xF4\x90\x80\x80"), R + R + R + R);
  EXPECT_EQ(whole("\xC0\xAF"), R + R);
  EXPECT_EQ(whole("\xE2\x82"), R);
  EXPECT_EQ(whole("\xFF\xFE\xE2\x82\xAC"), R + R + "\xE2\x82\xAC");
  // Negative control: well-formed text passes unchanged.
  EXPECT_EQ(whole("caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC"), "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC");
}

TEST(Utf8Stream, HoldsACharacterSplitOverTokensUntilItIsComplete) {
  Utf8Stream s;
  EXPECT_EQ(s.push("x\xF0\x9F"), "x");
  EXPECT_EQ(s.push("\x98"), "");
  EXPECT_EQ(s.push("\x80y"), "\xF0\x9F\x98\x80y");
  EXPECT_EQ(s.finish(), "");
}

TEST(Utf8Stream, AnyChunkingGivesTheSameWellFormedText) {
  std::mt19937_64 rng(test::process_seed("Utf8Stream"));
  // Bytes biased towards UTF-8 lead and continuation bytes, so that split, complete and
  // broken sequences all occur.
  const unsigned char pool[] = {'a', ' ', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 0xED, 0xA0, 0xC0, 0xFF, 0xBF, 0xF4, 0x90, 0xE0};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes;
    const int n = std::uniform_int_distribution<int>(0, 24)(rng);
    for (int i = 0; i < n; ++i) bytes.push_back(static_cast<char>(pool[rng() % sizeof(pool)]));
    const std::string want = whole(bytes);
    ASSERT_TRUE(well_formed(want)) << trial;
    Utf8Stream s;
    std::string got;
    for (size_t at = 0; at < bytes.size();) {
      const size_t len = std::uniform_int_distribution<size_t>(1, 4)(rng);
      got += s.push(std::string_view(bytes).substr(at, len));
      at += len;
    }
    got += s.finish();
    ASSERT_EQ(got, want) << "trial " << trial;
  }
}

}  // namespace
}  // namespace speedrun::data
