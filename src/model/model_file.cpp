#include "model/model_file.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <optional>
#include <system_error>

#include "core/device_memory.h"
#include "core/error.h"

namespace speedrun::model {

namespace fs = std::filesystem;

namespace {

// The step of a checkpoint file name "step_<digits>.safetensors"; nullopt for any other name.
std::optional<int64_t> step_in_name(const std::string& name) {
  const std::string prefix = "step_", suffix = ".safetensors";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  const char* begin = name.data() + prefix.size();
  const char* end = name.data() + name.size() - suffix.size();
  if (!std::all_of(begin, end, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  int64_t step = 0;
  const auto [ptr, ec] = std::from_chars(begin, end, step);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return step;
}

}  // namespace

std::string checkpoint_file_name(int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "step_%06lld.safetensors", static_cast<long long>(step));
  return buf;
}

fs::path find_checkpoint(const fs::path& file_or_dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(file_or_dir, ec);
  if (ec || !fs::exists(st))
    throw UserError("checkpoint " + file_or_dir.string() + " does not exist (give a .safetensors checkpoint or a run "
                    "directory)");
  if (!fs::is_directory(st)) return file_or_dir;
  const fs::path dir = fs::is_directory(file_or_dir / "checkpoints") ? file_or_dir / "checkpoints" : file_or_dir;
  std::optional<int64_t> newest;
  fs::path best;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto step = step_in_name(it->path().filename().string());
    if (step && (!newest || *step > *newest)) {
      newest = step;
      best = it->path();
    }
  }
  if (ec) throw UserError("cannot read " + dir.string() + ": " + ec.message());
  if (!newest)
    throw UserError(dir.string() + " holds no checkpoint (step_<N>.safetensors)" +
                    (dir == file_or_dir ? std::string(" and has no checkpoints/ directory") : std::string()));
  return best;
}

config::RunConfig config_of(const SafetensorsFile& file) {
  const std::string where = file.path().string();
  auto it = file.metadata().find(kFormatKey);
  if (it == file.metadata().end())
    throw UserError(where + ": not a speedrun checkpoint (no metadata entry " + kFormatKey + ")");
  if (it->second != kCheckpointFormat)
    throw UserError(where + ": metadata " + kFormatKey + " is '" + it->second + "'; this speedrun reads " +
                    kCheckpointFormat);
  const std::string& text = file.metadata_at(kConfigKey);
  const config::json raw = config::parse_json_text(text, where + " (metadata " + kConfigKey + ")");
  return config::run_config_from_json(raw, where + " (metadata " + kConfigKey + ")");
}

int64_t step_of(const SafetensorsFile& file) {
  const std::string& text = file.metadata_at(kStepKey);
  int64_t step = -1;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), step);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || step < 0)
    throw UserError(file.path().string() + ": metadata " + kStepKey + " is '" + text +
                    "', not a non-negative integer");
  return step;
}

void load_parameters(const SafetensorsFile& file, Model& model) {
  const auto& specs = model.layout().params();
  std::vector<std::string> missing;
  for (const ParamSpec& spec : specs)
    if (!file.contains(spec.name)) missing.push_back(spec.name);
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 8; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 8) list += ", ... (" + std::to_string(missing.size()) + " in all)";
    throw UserError(file.path().string() + ": " + std::to_string(missing.size()) + " of the model's " +
                    std::to_string(specs.size()) + " parameters are missing: " + list);
  }
  std::vector<float> host;
  for (size_t i = 0; i < specs.size(); ++i) {
    const ParamSpec& spec = specs[i];
    Tensor p = model.param(i);
    if (p.device == Device::cpu) {
      file.read_into(spec.name, "F32", spec.shape, p.ptr);
    } else {
      host.resize(static_cast<size_t>(spec.numel));
      file.read_into(spec.name, "F32", spec.shape, host.data());
      if (!host.empty()) device_copy(p.ptr, host.data(), host.size() * sizeof(float));
    }
  }
  model.weights_changed();
}

std::vector<SafetensorsTensor> parameter_tensors(const ParamLayout& layout, const float* params) {
  std::vector<SafetensorsTensor> out;
  out.reserve(layout.params().size());
  for (const ParamSpec& spec : layout.params())
    out.push_back({spec.name, "F32", spec.shape, params + spec.offset, static_cast<size_t>(spec.numel) * sizeof(float)});
  return out;
}

std::map<std::string, std::string> checkpoint_metadata(const config::RunConfig& cfg, int64_t step) {
  return {{kFormatKey, kCheckpointFormat}, {kConfigKey, config::to_json(cfg).dump()}, {kStepKey, std::to_string(step)}};
}

void write_model_checkpoint(const fs::path& path, const config::RunConfig& cfg, const ParamLayout& layout,
                            const float* params, int64_t step) {
  write_safetensors(path, parameter_tensors(layout, params), checkpoint_metadata(cfg, step));
}

}  // namespace speedrun::model
