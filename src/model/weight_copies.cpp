#include "model/weight_copies.h"

#include <cstdlib>

#include "core/error.h"

namespace speedrun::model {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::optional<std::string>(v) : std::nullopt;
}

std::optional<WeightCopyWriter>& writer_override() {
  static std::optional<WeightCopyWriter> w;
  return w;
}

std::optional<bool>& check_override() {
  static std::optional<bool> c;
  return c;
}

}  // namespace

WeightCopyWriter parse_weight_copy_writer(const std::optional<std::string>& value) {
  if (!value || value->empty() || *value == "convert") return WeightCopyWriter::convert;
  if (*value == "optimizer") return WeightCopyWriter::optimizer;
  throw UserError("SPEEDRUN_WEIGHT_COPIES=" + *value + ": expected convert, optimizer or nothing (environment variable)");
}

bool parse_check_copies(const std::optional<std::string>& value) {
  if (!value || value->empty() || *value == "0") return false;
  if (*value == "1") return true;
  throw UserError("SPEEDRUN_CHECK_COPIES=" + *value + ": expected 1, 0 or nothing (environment variable)");
}

WeightCopyWriter weight_copy_writer() {
  if (writer_override()) return *writer_override();
  static const WeightCopyWriter from_env = parse_weight_copy_writer(env("SPEEDRUN_WEIGHT_COPIES"));
  return from_env;
}

bool check_weight_copies() {
  if (check_override()) return *check_override();
  static const bool from_env = parse_check_copies(env("SPEEDRUN_CHECK_COPIES"));
  return from_env;
}

WeightCopyWriter set_weight_copy_writer(WeightCopyWriter writer) {
  const WeightCopyWriter previous = weight_copy_writer();
  writer_override() = writer;
  return previous;
}

bool set_check_weight_copies(bool on) {
  const bool previous = check_weight_copies();
  check_override() = on;
  return previous;
}

}  // namespace speedrun::model
