#include "data/pretokenize.h"

#include "data/char_class.h"

namespace speedrun::data {

namespace {

// End of the run of characters of class `cls` that starts at i (text[i] has that class).
size_t end_of_run(const unsigned char* s, size_t n, size_t i, CharClass cls, const CharClassifier& cc) {
  while (i < n) {
    const unsigned char b = s[i];
    if (b < 0x80) {  // ASCII fast path: one table load per byte
      if (cc.of_ascii(b) != cls) break;
      ++i;
    } else {
      const Char ch = cc.at(s + i, s + n);
      if (ch.cls != cls) break;
      i += static_cast<size_t>(ch.length);
    }
  }
  return i;
}

// End of the piece starting at a whitespace character i. The regex tries \s+(?!\S)
// first: the longest whitespace run not followed by a non-space. If the run reaches the
// end of the text, that is the whole run; otherwise it backtracks by one character, so
// the run's last character is left over - a space then becomes the optional leading
// space of the next piece, any other character is matched alone by the final \s+. A
// run of a single character followed by a non-space cannot backtrack and is taken
// whole by \s+.
size_t end_of_whitespace(const unsigned char* s, size_t n, size_t i, const CharClassifier& cc) {
  const size_t start = i;
  size_t last_char = i;
  while (i < n) {
    const Char ch = cc.at(s + i, s + n);
    if (ch.cls != CharClass::whitespace) break;
    last_char = i;
    i += static_cast<size_t>(ch.length);
  }
  if (i == n) return n;
  return last_char > start ? last_char : i;
}

// Length of the contraction ('s 't 're 've 'm 'll 'd; case-sensitive) at i, or 0.
size_t contraction_length(const unsigned char* s, size_t n, size_t i) {
  if (i + 1 >= n) return 0;
  const unsigned char c1 = s[i + 1];
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (i + 2 >= n) return 0;
  const unsigned char c2 = s[i + 2];
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// End of the piece that starts at i (i < n). The alternatives in the regex's order:
//  1. a contraction, when text[i] is an apostrophe;
//  2-4. ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of
//     one class; every non-whitespace character is in exactly one of the three classes,
//     so a space followed by a non-space always starts such a piece;
//  5-6. otherwise text[i] is whitespace (see end_of_whitespace).
size_t end_of_piece(const unsigned char* s, size_t n, size_t i, const CharClassifier& cc) {
  const unsigned char c = s[i];
  if (c == '\'') {
    if (const size_t len = contraction_length(s, n, i)) return i + len;
  }
  size_t run_start = i;
  CharClass cls = cc.at(s + i, s + n).cls;
  if (c == ' ' && i + 1 < n) {
    const CharClass next = cc.at(s + i + 1, s + n).cls;
    if (next != CharClass::whitespace) {
      run_start = i + 1;
      cls = next;
    }
  }
  if (cls == CharClass::whitespace) return end_of_whitespace(s, n, i, cc);
  return end_of_run(s, n, run_start, cls, cc);
}

}  // namespace

std::string_view Pretokenizer::next() {
  if (pos_ >= text_.size()) return {};
  const auto* s = reinterpret_cast<const unsigned char*>(text_.data());
  const size_t start = pos_;
  pos_ = end_of_piece(s, text_.size(), start, CharClassifier::instance());
  return text_.substr(start, pos_ - start);
}

std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  Pretokenizer scanner(text);
  for (std::string_view piece = scanner.next(); !piece.empty(); piece = scanner.next()) pieces.push_back(piece);
  return pieces;
}

// Why a cut at p (text[p] == ' ', text[p-1] an ASCII non-whitespace character) is safe:
//  (a) p is a piece boundary of the whole text. The piece holding text[p-1] contains a
//      non-space, so it is a contraction or an optional space plus a run of one
//      non-whitespace class; neither can contain a space after its first byte, so that
//      piece ends at p. (text[p-1] is ASCII, so it is a whole character on its own and
//      the UTF-8 decoding of both parts lines up with that of the whole.)
//  (b) The pieces before p are unchanged when the text ends at p. A match starting at
//      q < p can only observe text[p] by reading past text[p-1], a non-space; the only
//      such reads are the end test of a class run, the letters of a contraction and the
//      (?!\S) lookahead. A space and the end of the text give the same answer to each:
//      neither is a letter, number, other character or contraction letter, and neither
//      is \S. Whitespace runs (\s+) cannot reach p because
//      they would have to contain text[p-1].
//  (c) The pieces from p on are unchanged: the regex has no look-behind, so the match at
//      p and after depends only on text[p..], and the scan resumes exactly at p in (a).
bool is_safe_split_point(std::string_view text, size_t pos) {
  if (pos == 0 || pos >= text.size() || text[pos] != ' ') return false;
  const auto prev = static_cast<unsigned char>(text[pos - 1]);
  return prev < 0x80 && CharClassifier::instance().of_ascii(prev) != CharClass::whitespace;
}

size_t find_safe_split_point(std::string_view text, size_t from) {
  for (size_t pos = from == 0 ? 1 : from; pos < text.size(); ++pos) {
    if (is_safe_split_point(text, pos)) return pos;
  }
  return text.size();
}

}  // namespace speedrun::data
