#include "config/schema.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace speedrun::config {

void Errors::throw_if_any(const std::string& where, const LineOf& line_of) const {
  if (list_.empty()) return;
  std::string msg = where.empty() ? "" : where + ": ";
  msg += list_.size() == 1 ? "invalid config" : std::to_string(list_.size()) + " problems in config";
  for (const Entry& e : list_) {
    msg += "\n  ";
    if (const size_t line = line_of && !where.empty() ? line_of(e.path) : 0; line > 0)
      msg += where + ":" + std::to_string(line) + ": ";
    msg += e.path.empty() ? e.message : e.path + ": " + e.message;
  }
  throw UserError(msg);
}

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string index_path(const std::string& parent, size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

std::string format_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string describe_value(const json& v) {
  switch (v.type()) {
    case json::value_t::object: return "an object";
    case json::value_t::array: {
      std::string s = v.dump();
      return s.size() <= 60 ? s : "a list of " + std::to_string(v.size()) + " elements";
    }
    case json::value_t::null: return "null";
    case json::value_t::number_float: return format_number(v.get<double>());
    default: {
      std::string s = v.dump();
      return s.size() <= 60 ? s : s.substr(0, 57) + "...";
    }
  }
}

static size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_key(const std::string& key, const std::vector<std::string>& known) {
  std::string best;
  size_t best_d = std::max<size_t>(2, key.size() / 3) + 1;
  for (const std::string& k : known) {
    const size_t d = edit_distance(key, k);
    if (d < best_d) best_d = d, best = k;
  }
  return best;
}

static std::string known_keys_phrase(const std::string& key, std::vector<std::string> known) {
  std::string suggestion = closest_key(key, known);
  if (!suggestion.empty()) return "did you mean '" + suggestion + "'?";
  std::sort(known.begin(), known.end());
  known.erase(std::unique(known.begin(), known.end()), known.end());
  std::string s = "known keys: ";
  for (size_t i = 0; i < known.size(); ++i) s += (i ? ", " : "") + known[i];
  return s;
}

// Range first: converting a double beyond FLT_MAX to float is undefined behaviour.
Constraint<double> positive_f32() {
  return {[](const double& v) { return v > 0.0 && v <= FLT_MAX && std::isnormal(static_cast<float>(v)); },
          "> 0 and a normal fp32 number (" + format_number(FLT_MIN) + " to " + format_number(FLT_MAX) + ")"};
}

Constraint<double> fp32_below_one() {
  return {[](const double& v) { return v >= 0.0 && v < 1.0 && static_cast<float>(v) < 1.0f; },
          "in [0, " + format_number(1.0 - 0x1p-25) + "): below 1 - 2^-25, which fp32 rounds to 1"};
}

Constraint<double> finite_f32() {
  return {[](const double& v) { return std::fabs(v) <= FLT_MAX; },
          "finite in fp32 (|x| <= " + format_number(FLT_MAX) + ")"};
}

Constraint<double> zero_or_unit_f32() {
  return {[](const double& v) { return v == 0.0 || (v >= FLT_MIN && v <= 1.0); },
          "0, or in [" + format_number(FLT_MIN) + ", 1] (a normal fp32 number)"};
}

Constraint<std::string> one_of(std::vector<std::string> choices) {
  std::string phrase = "one of ";
  for (size_t i = 0; i < choices.size(); ++i) phrase += (i ? ", \"" : "\"") + choices[i] + "\"";
  return {[choices](const std::string& v) { return std::find(choices.begin(), choices.end(), v) != choices.end(); },
          phrase};
}

Constraint<std::string> non_empty_string() {
  return {[](const std::string& v) { return !v.empty(); }, "(non-empty)"};
}

Constraint<std::vector<std::string>> non_empty_list() {
  return {[](const std::vector<std::string>& v) {
            return !v.empty() && std::all_of(v.begin(), v.end(), [](const std::string& s) { return !s.empty(); });
          },
          "(non-empty, no empty entries)"};
}

void JsonReader::finish() {
  for (auto it = obj_.begin(); it != obj_.end(); ++it) {
    if (std::find(known_.begin(), known_.end(), it.key()) != known_.end()) continue;
    errors_.add(join_path(path_, it.key()), "unknown key (" + known_keys_phrase(it.key(), known_) + ")");
  }
}

void KeyFinder::finish_lookup(const std::string& segment) {
  if (result || !error.empty()) return;
  error = "unknown key '" + segment + "' (" + known_keys_phrase(segment, known_) + ")";
}

std::vector<std::string> split_key_path(const std::string& path) {
  std::vector<std::string> out;
  std::string cur;
  auto bad = [&](const std::string& why) { throw UserError("malformed key path '" + path + "': " + why); };
  for (size_t i = 0; i < path.size(); ++i) {
    const char ch = path[i];
    if (ch == '.') {
      if (cur.empty() && (out.empty() || out.back().front() != '[')) bad("empty key");
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (ch == '[') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
      const size_t close = path.find(']', i);
      if (close == std::string::npos || close == i + 1) bad("unclosed or empty [index]");
      const std::string digits = path.substr(i + 1, close - i - 1);
      if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        bad("index '" + digits + "' is not a non-negative integer");
      out.push_back("[" + digits + "]");
      i = close;
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  if (out.empty()) bad("empty");
  if (out.front().front() == '[') bad("starts with an index");
  return out;
}

}  // namespace speedrun::config
