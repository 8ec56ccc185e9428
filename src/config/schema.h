// One schema, four uses.
//
// Every config struct describes its fields once, in a templated `bind(Archive&)`:
//
//   template <class A> void bind(A& a) {
//     a.field("steps", steps, at_least<int64_t>(1), "optimizer steps to run");
//     a.object("model", model, "the network");
//   }
//
// and the archives below walk that description to (1) read and validate JSON with
// errors that name the JSON path, rejecting unknown keys; (2) write the resolved
// config back to JSON; (3) find the type of a key for `--set a.b.c=value`; (4) print a
// reference table of every key for the docs. Adding a key is one line in `bind`.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

namespace speedrun::config {

using nlohmann::json;

// ---------------------------------------------------------------------------
// Errors collected while reading; reported together so that one run of
// `validate-config` shows every problem in a file.
// ---------------------------------------------------------------------------
class Errors {
 public:
  // The line (1-based) in `where` of the value at a key path, 0 when unknown.
  using LineOf = std::function<size_t(const std::string& path)>;

  void add(const std::string& path, const std::string& message) { list_.push_back({path, message}); }
  bool empty() const { return list_.empty(); }
  // Throws UserError with every message, one per line, under a first line naming
  // `where`; a message about a key whose line `line_of` knows starts "<where>:<line>: ".
  void throw_if_any(const std::string& where, const LineOf& line_of = {}) const;

 private:
  struct Entry {
    std::string path, message;
  };
  std::vector<Entry> list_;
};

std::string join_path(const std::string& parent, const std::string& key);
std::string index_path(const std::string& parent, size_t index);
// A short rendering of a JSON value for error messages ("-0.1", "\"abc\"", "an object").
std::string describe_value(const json& v);
// The known key closest to `key` by edit distance, or "" when none is close.
std::string closest_key(const std::string& key, const std::vector<std::string>& known);

// ---------------------------------------------------------------------------
// Constraints on a value: a predicate and the phrase that completes
// "expected a number ..." in an error message.
// ---------------------------------------------------------------------------
template <class T>
struct Constraint {
  std::function<bool(const T&)> ok;
  std::string phrase;  // e.g. "> 0", ">= 1", "in [0, 1)"
};

std::string format_number(double v);

template <class T>
Constraint<T> any() {
  return {nullptr, ""};
}
template <class T>
Constraint<T> greater_than(T lo) {
  return {[lo](const T& v) { return v > lo; }, "> " + format_number(static_cast<double>(lo))};
}
template <class T>
Constraint<T> at_least(T lo) {
  return {[lo](const T& v) { return v >= lo; }, ">= " + format_number(static_cast<double>(lo))};
}
template <class T>
Constraint<T> in_range(T lo, T hi) {  // closed interval
  return {[lo, hi](const T& v) { return v >= lo && v <= hi; },
          "in [" + format_number(static_cast<double>(lo)) + ", " + format_number(static_cast<double>(hi)) + "]"};
}
template <class T>
Constraint<T> in_half_open(T lo, T hi) {  // [lo, hi)
  return {[lo, hi](const T& v) { return v >= lo && v < hi; },
          "in [" + format_number(static_cast<double>(lo)) + ", " + format_number(static_cast<double>(hi)) + ")"};
}
// Floating-point settings the computation uses in fp32 (parameters, optimizer state and
// activations are fp32): a value that JSON and double hold but fp32 does not would
// silently become 0, a subnormal, infinity or 1. These refuse it.
//   positive_f32():     > 0 and, rounded to fp32, a normal number: [2^-126, FLT_MAX].
//   fp32_below_one():   in [0, 1) and still below 1 once rounded to fp32: [0, 1 - 2^-25)
//                       (a momentum or beta that rounds to 1 never lets a gradient in).
//   finite_f32():       |v| <= FLT_MAX.
Constraint<double> positive_f32();
Constraint<double> fp32_below_one();
Constraint<double> finite_f32();
//   zero_or_unit_f32(): 0, or in [2^-126, 1] (a rate that fp32 would not turn into 0).
Constraint<double> zero_or_unit_f32();
// Integers addressed by the computation in 64-bit arithmetic and BLAS's 32-bit
// dimensions stay exact below these bounds.
inline constexpr int64_t kMaxInt32 = 2147483647;            // BLAS / cuBLAS int dimensions
inline constexpr int64_t kMaxExactInteger = int64_t{1} << 53;  // integers a double holds exactly

Constraint<std::string> one_of(std::vector<std::string> choices);
Constraint<std::string> non_empty_string();
Constraint<std::vector<std::string>> non_empty_list();
template <class T>
Constraint<std::optional<T>> optional_of(Constraint<T> inner) {
  auto ok = inner.ok;
  return {ok ? std::function<bool(const std::optional<T>&)>(
                   [ok](const std::optional<T>& v) { return !v || ok(*v); })
             : nullptr,
          inner.phrase};
}
template <class T>
Constraint<std::vector<T>> each(Constraint<T> inner, std::optional<size_t> exact_size = std::nullopt) {
  auto ok = inner.ok;
  std::string phrase = inner.phrase.empty() ? "" : "each " + inner.phrase;
  if (exact_size) phrase = "of exactly " + std::to_string(*exact_size) + (phrase.empty() ? "" : ", " + phrase);
  return {[ok, exact_size](const std::vector<T>& v) {
            if (exact_size && v.size() != *exact_size) return false;
            if (ok)
              for (const T& x : v)
                if (!ok(x)) return false;
            return true;
          },
          phrase};
}

// ---------------------------------------------------------------------------
// Value kinds: the noun used in messages and the JSON <-> C++ conversion.
// ---------------------------------------------------------------------------
enum class Kind { boolean, integer, number, string, string_list, number_list, object, object_list };

template <class T>
struct ValueTraits;

template <>
struct ValueTraits<bool> {
  static constexpr Kind kind = Kind::boolean;
  static constexpr const char* noun = "true or false";
  static bool from_json(const json& j, bool& out) {
    if (!j.is_boolean()) return false;
    out = j.get<bool>();
    return true;
  }
  static json to_json(bool v) { return v; }
};

template <>
struct ValueTraits<int64_t> {
  static constexpr Kind kind = Kind::integer;
  static constexpr const char* noun = "an integer";
  // Integers in JSON may be written as 1000, 1e3 or 1000.0: a number is accepted when
  // it is exactly an integer (1e3, 5.24288e5; not 2.5) within int64, and for numbers
  // written with a fraction or an exponent, parsed as a double, within +-2^53 where a
  // double still holds every integer (1e16 could have been any of several integers).
  static bool from_json(const json& j, int64_t& out) {
    if (j.is_number_unsigned()) {  // nlohmann parses every non-negative integer as unsigned
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return false;  // beyond int64
      out = static_cast<int64_t>(u);
      return true;
    }
    if (j.is_number_integer()) {
      out = j.get<int64_t>();
      return true;
    }
    if (j.is_number_float()) {
      const double d = j.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0) {
        out = static_cast<int64_t>(d);
        return true;
      }
    }
    return false;
  }
  static json to_json(int64_t v) { return v; }
};

template <>
struct ValueTraits<double> {
  static constexpr Kind kind = Kind::number;
  static constexpr const char* noun = "a number";
  static bool from_json(const json& j, double& out) {
    if (!j.is_number()) return false;
    out = j.get<double>();
    return std::isfinite(out);
  }
  static json to_json(double v) { return v; }
};

template <>
struct ValueTraits<std::string> {
  static constexpr Kind kind = Kind::string;
  static constexpr const char* noun = "a string";
  static bool from_json(const json& j, std::string& out) {
    if (!j.is_string()) return false;
    out = j.get<std::string>();
    return true;
  }
  static json to_json(const std::string& v) { return v; }
};

template <class T>
struct ValueTraits<std::vector<T>> {
  static constexpr Kind kind = std::is_same_v<T, std::string> ? Kind::string_list : Kind::number_list;
  static constexpr const char* noun = std::is_same_v<T, std::string> ? "a list of strings" : "a list of numbers";
  static bool from_json(const json& j, std::vector<T>& out) {
    if (!j.is_array()) return false;
    std::vector<T> v;
    for (const json& e : j) {
      T x{};
      if (!ValueTraits<T>::from_json(e, x)) return false;
      v.push_back(std::move(x));
    }
    out = std::move(v);
    return true;
  }
  static json to_json(const std::vector<T>& v) {
    json a = json::array();
    for (const T& x : v) a.push_back(ValueTraits<T>::to_json(x));
    return a;
  }
};

template <class T>
struct ValueTraits<std::optional<T>> {
  static constexpr Kind kind = ValueTraits<T>::kind;
  static constexpr const char* noun = ValueTraits<T>::noun;
  static constexpr bool nullable = true;
  static bool from_json(const json& j, std::optional<T>& out) {
    if (j.is_null()) {
      out.reset();
      return true;
    }
    T x{};
    if (!ValueTraits<T>::from_json(j, x)) return false;
    out = std::move(x);
    return true;
  }
  static json to_json(const std::optional<T>& v) { return v ? ValueTraits<T>::to_json(*v) : json(nullptr); }
};

template <class T>
constexpr bool is_nullable_v = false;
template <class T>
constexpr bool is_nullable_v<std::optional<T>> = true;

template <class T>
std::string expected_phrase(const Constraint<T>& c) {
  std::string s = ValueTraits<T>::noun;
  if (!c.phrase.empty()) s += " " + c.phrase;
  if constexpr (is_nullable_v<T>) s += " (or null)";
  return s;
}

// ---------------------------------------------------------------------------
// Archive 1: read JSON into a struct, collecting errors.
// ---------------------------------------------------------------------------
class JsonReader {
 public:
  JsonReader(const json& obj, std::string path, Errors& errors) : obj_(obj), path_(std::move(path)), errors_(errors) {}

  template <class T>
  void field(const char* key, T& value, const Constraint<T>& c = {}, const char* doc = "", bool required = false) {
    known_.push_back(key);
    auto it = obj_.find(key);
    const std::string path = join_path(path_, key);
    if (it == obj_.end()) {
      if (required) errors_.add(path, "required key is missing (expected " + expected_phrase(c) + ")");
      return;
    }
    T parsed{};
    if (!ValueTraits<T>::from_json(*it, parsed) || (c.ok && !c.ok(parsed))) {
      errors_.add(path, "expected " + expected_phrase(c) + ", got " + describe_value(*it));
      return;
    }
    value = std::move(parsed);
  }
  template <class T>
  void required(const char* key, T& value, const Constraint<T>& c = {}, const char* doc = "") {
    field(key, value, c, doc, true);
  }

  template <class S>
  void object(const char* key, S& sub, const char* doc = "") {
    known_.push_back(key);
    auto it = obj_.find(key);
    if (it == obj_.end()) return;  // every sub-object has defaults
    const std::string path = join_path(path_, key);
    if (!it->is_object()) {
      errors_.add(path, "expected an object, got " + describe_value(*it));
      return;
    }
    JsonReader sub_reader(*it, path, errors_);
    sub.bind(sub_reader);
    sub_reader.finish();
  }

  // A list of objects, each read by `read_one(reader, element)`.
  template <class S, class ReadOne>
  void object_list(const char* key, std::vector<S>& out, ReadOne read_one, const char* doc = "") {
    known_.push_back(key);
    auto it = obj_.find(key);
    if (it == obj_.end()) return;
    const std::string path = join_path(path_, key);
    if (!it->is_array()) {
      errors_.add(path, "expected a list of objects, got " + describe_value(*it));
      return;
    }
    out.clear();
    for (size_t i = 0; i < it->size(); ++i) {
      const std::string ipath = index_path(path, i);
      const json& e = (*it)[i];
      if (!e.is_object()) {
        errors_.add(ipath, "expected an object, got " + describe_value(e));
        continue;
      }
      S element{};
      JsonReader r(e, ipath, errors_);
      read_one(r, element);
      r.finish();
      out.push_back(std::move(element));
    }
  }

  // Reports keys of this object that no field claimed, with a suggestion.
  void finish();

  const json& raw() const { return obj_; }
  const std::string& path() const { return path_; }
  Errors& errors() { return errors_; }

 private:
  const json& obj_;
  std::string path_;
  Errors& errors_;
  std::vector<std::string> known_;
};

// ---------------------------------------------------------------------------
// Archive 2: write a struct to JSON (every key, defaults included).
// ---------------------------------------------------------------------------
class JsonWriter {
 public:
  json out = json::object();

  template <class T>
  void field(const char* key, T& value, const Constraint<T>& = {}, const char* = "", bool = false) {
    out[key] = ValueTraits<T>::to_json(value);
  }
  template <class T>
  void required(const char* key, T& value, const Constraint<T>& c = {}, const char* doc = "") {
    field(key, value, c, doc);
  }
  template <class S>
  void object(const char* key, S& sub, const char* = "") {
    JsonWriter w;
    sub.bind(w);
    out[key] = std::move(w.out);
  }
  template <class S, class ReadOne>
  void object_list(const char* key, std::vector<S>& list, ReadOne, const char* = "") {
    json a = json::array();
    for (S& e : list) {
      JsonWriter w;
      e.bind(w);
      a.push_back(std::move(w.out));
    }
    out[key] = std::move(a);
  }
};

// ---------------------------------------------------------------------------
// Archive 3: find what a dotted path refers to (for --set).
// ---------------------------------------------------------------------------
struct KeyInfo {
  Kind kind = Kind::string;
  bool nullable = false;
  std::string expected;  // "a number > 0"
};

class KeyFinder {
 public:
  // `segments` is the path below the struct being bound; `raw` is the raw JSON of
  // that struct (used to pick the type of an optimizer entry).
  KeyFinder(std::vector<std::string> segments, const json& raw) : segments_(std::move(segments)), raw_(raw) {}

  template <class T>
  void field(const char* key, T&, const Constraint<T>& c = {}, const char* = "", bool = false) {
    known_.push_back(key);
    if (segments_.size() != 1 || segments_[0] != key) return;
    result = KeyInfo{ValueTraits<T>::kind, is_nullable_v<T>, expected_phrase(c)};
  }
  template <class T>
  void required(const char* key, T& value, const Constraint<T>& c = {}, const char* doc = "") {
    field(key, value, c, doc);
  }
  template <class S>
  void object(const char* key, S& sub, const char* = "");
  template <class S, class ReadOne>
  void object_list(const char* key, std::vector<S>&, ReadOne read_one, const char* = "");

  // After bind(): when nothing matched `segment` and no error was set, records
  // "unknown key" with the closest known key as a suggestion.
  void finish_lookup(const std::string& segment);

  std::optional<KeyInfo> result;
  std::string error;  // set when the path is wrong, naming the bad segment
  std::vector<std::string> known_;

 private:
  std::vector<std::string> segments_;
  const json& raw_;
};

// Parses "a.b[2].c" into {"a", "b", "[2]", "c"}; throws UserError on malformed paths.
std::vector<std::string> split_key_path(const std::string& path);

template <class S>
void KeyFinder::object(const char* key, S& sub, const char*) {
  known_.push_back(key);
  if (segments_.empty() || segments_[0] != key) return;
  if (segments_.size() == 1) {
    error = "'" + std::string(key) + "' is an object; set one of its keys";
    return;
  }
  static const json empty = json::object();
  const json& raw_sub = raw_.contains(key) && raw_[key].is_object() ? raw_[key] : empty;
  KeyFinder inner({segments_.begin() + 1, segments_.end()}, raw_sub);
  sub.bind(inner);
  inner.finish_lookup(segments_[1]);
  result = inner.result;
  error = inner.error;
}

template <class S, class ReadOne>
void KeyFinder::object_list(const char* key, std::vector<S>&, ReadOne read_one, const char*) {
  known_.push_back(key);
  if (segments_.empty() || segments_[0] != key) return;
  if (segments_.size() < 3 || segments_[1].front() != '[') {
    error = "'" + std::string(key) + "' is a list; address an element's key, e.g. " + key + "[0].lr";
    return;
  }
  const size_t index = std::stoul(segments_[1].substr(1, segments_[1].size() - 2));
  if (!raw_.contains(key) || !raw_[key].is_array() || index >= raw_[key].size()) {
    const size_t n = raw_.contains(key) && raw_[key].is_array() ? raw_[key].size() : 0;
    error = std::string(key) + "[" + std::to_string(index) + "] does not exist (the list has " + std::to_string(n) +
            " entries)";
    return;
  }
  const json& raw_elem = raw_[key][index];
  // Bind a throwaway element, read leniently from the raw JSON so that its
  // type-dependent fields (e.g. an optimizer's settings) are the right ones.
  S element{};
  Errors ignored;
  JsonReader pre(raw_elem, "", ignored);
  read_one(pre, element);
  KeyFinder inner({segments_.begin() + 2, segments_.end()}, raw_elem);
  element.bind(inner);
  inner.finish_lookup(segments_[2]);
  result = inner.result;
  error = inner.error;
}

// ---------------------------------------------------------------------------
// Archive 4: a reference table of every key (path, type, default, doc).
// ---------------------------------------------------------------------------
struct ReferenceRow {
  std::string path, expected, default_value, doc;
};

class ReferenceWriter {
 public:
  explicit ReferenceWriter(std::string prefix, std::vector<ReferenceRow>& rows) : prefix_(std::move(prefix)), rows_(rows) {}

  template <class T>
  void field(const char* key, T& value, const Constraint<T>& c = {}, const char* doc = "", bool required = false) {
    rows_.push_back({join_path(prefix_, key), expected_phrase(c),
                     required ? "(required)" : ValueTraits<T>::to_json(value).dump(), doc});
  }
  template <class T>
  void required(const char* key, T& value, const Constraint<T>& c = {}, const char* doc = "") {
    field(key, value, c, doc, true);
  }
  template <class S>
  void object(const char* key, S& sub, const char* = "") {
    ReferenceWriter w(join_path(prefix_, key), rows_);
    sub.bind(w);
  }
  template <class S, class ReadOne>
  void object_list(const char* key, std::vector<S>&, ReadOne, const char* = "") {}  // documented by the caller

 private:
  std::string prefix_;
  std::vector<ReferenceRow>& rows_;
};

}  // namespace speedrun::config
