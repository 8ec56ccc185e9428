#include "core/json_text.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace speedrun {

namespace {

// An open object or array while scanning.
struct Frame {
  bool object = false;
  std::string path;                       // of this container
  std::map<std::string, size_t> keys;     // object: key -> line of its first occurrence
  std::string key;                        // object: the key whose value comes next
  size_t index = 0;                       // array: index of the value that comes next
  bool expect_key = false;                // object: the next string is a key
};

std::string child_path(const Frame& f) {
  if (f.object) return f.path.empty() ? f.key : f.path + "." + f.key;
  return f.path + "[" + std::to_string(f.index) + "]";
}

// Walks valid JSON text, calling on_key(frame, line, fresh, first_line) for every object
// key (fresh: not seen before in that object; first_line: of its first occurrence) and
// on_element(path, line) for every array element that is an object or an array.
template <class OnKey, class OnElement>
void scan(const std::string& text, OnKey on_key, OnElement on_element) {
  std::vector<Frame> stack;
  size_t line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    switch (c) {
      case '\n': ++line; break;
      case '{':
      case '[': {
        Frame f;
        f.object = c == '{';
        f.expect_key = f.object;
        if (!stack.empty()) {
          f.path = child_path(stack.back());
          if (!stack.back().object) on_element(f.path, line);
        }
        stack.push_back(std::move(f));
        break;
      }
      case '}':
      case ']':
        if (!stack.empty()) stack.pop_back();
        break;
      case ',':
        if (!stack.empty()) {
          if (stack.back().object) stack.back().expect_key = true;
          else ++stack.back().index;
        }
        break;
      case '"': {
        // A string token: skip to its closing quote (the text is valid JSON, so a quote
        // after a backslash is escaped and the string holds no raw newline).
        const size_t start = i;
        for (++i; i < text.size() && text[i] != '"'; ++i)
          if (text[i] == '\\') ++i;
        if (stack.empty() || !stack.back().object || !stack.back().expect_key) break;
        Frame& f = stack.back();
        f.expect_key = false;
        // Unescape with the parser itself, so keys compare as the parser sees them.
        f.key = nlohmann::json::parse(text.substr(start, i - start + 1)).get<std::string>();
        const auto [it, fresh] = f.keys.emplace(f.key, line);
        on_key(f, line, fresh, it->second);
        break;
      }
      default: break;  // ':', numbers, literals, whitespace
    }
  }
}

}  // namespace

std::vector<DuplicateKey> find_duplicate_keys(const std::string& text) {
  std::vector<DuplicateKey> found;
  scan(
      text,
      [&](const Frame& f, size_t line, bool fresh, size_t first_line) {
        if (!fresh) found.push_back({child_path(f), line, first_line});
      },
      [](const std::string&, size_t) {});
  return found;
}

std::map<std::string, size_t> value_lines(const std::string& text) {
  std::map<std::string, size_t> lines;
  scan(
      text, [&](const Frame& f, size_t line, bool, size_t) { lines.emplace(child_path(f), line); },
      [&](const std::string& path, size_t line) { lines.emplace(path, line); });
  return lines;
}

nlohmann::json parse_json_strict(const std::string& text, const std::string& filename) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::parse_error& e) {
    // Turn the byte offset into line:column for the message.
    size_t line = 1, col = 1;
    const size_t end = std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    for (size_t i = 0; i < end; ++i) {
      if (text[i] == '\n') ++line, col = 1;
      else ++col;
    }
    std::string what = e.what();
    // nlohmann's message starts with "[json.exception.parse_error.101] parse error at line ..., column ...: ".
    if (const size_t p = what.rfind(": "); p != std::string::npos) what = what.substr(p + 2);
    throw UserError(filename + ":" + std::to_string(line) + ":" + std::to_string(col) + ": malformed JSON: " + what);
  }
  const std::vector<DuplicateKey> dups = find_duplicate_keys(text);
  if (!dups.empty()) {
    std::string msg;
    for (const DuplicateKey& d : dups)
      msg += (msg.empty() ? "" : "\n") + filename + ":" + std::to_string(d.line) + ": duplicate key " + d.path +
             " (first at line " + std::to_string(d.first_line) + ")";
    msg += "\n  a JSON object must not repeat a key: only the last value would be used; keep one";
    throw UserError(msg);
  }
  return j;
}

}  // namespace speedrun
