// Strict parsing of JSON that a user wrote (run configs, tokenizer files, the run
// records `compare` reads back).
//
// nlohmann-json keeps the last of two equal keys in one object and drops the first
// without a word (RFC 8259 leaves duplicates undefined), so {"lr": 0.1, "lr": 0.2}
// would train with 0.2. parse_json_strict refuses that, naming the key's path and the
// lines of both occurrences.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace speedrun {

// One repeated key: `path` as config errors write it ("optimizers[1].lr"; a key at the
// top level is just its name), `line` of the repetition and `first_line` of the first
// occurrence (1-based).
struct DuplicateKey {
  std::string path;
  size_t line = 0;
  size_t first_line = 0;
};

// Every repeated key of every object in `text`, in text order. `text` must be valid
// JSON (parse it first): this is a second, small scan of the text for what the parser
// does not report, with line numbers, which nlohmann's parser callback does not give.
// Keys are compared after unescaping ("l\u0072" repeats "lr").
std::vector<DuplicateKey> find_duplicate_keys(const std::string& text);

// The line (1-based) where each value of `text` starts, by path as DuplicateKey writes
// it: the line of its key for an object member ("train.steps"), of its opening bracket
// for an array element that is an object or an array ("optimizers[1]"). Of a repeated
// key, the first. `text` must be valid JSON. For error messages that name a key's line.
std::map<std::string, size_t> value_lines(const std::string& text);

// Parses `text` (comments are not allowed). Throws UserError
//   "<filename>:<line>:<column>: malformed JSON: <reason>" on a syntax error, and
//   "<filename>:<line>: duplicate key <path> (first at line <n>); ..." listing every
//   repeated key otherwise.
nlohmann::json parse_json_strict(const std::string& text, const std::string& filename);

}  // namespace speedrun
