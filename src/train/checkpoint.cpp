#include "train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <regex>

#include <spdlog/fmt/fmt.h>

#include "build_info.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "core/files.h"
#include "core/hash.h"

namespace speedrun::train {

namespace {

// A StateSource over one optimizer entry's tensors in a checkpoint file.
class FileStateSource final : public optim::StateSource {
 public:
  FileStateSource(const SafetensorsFile& file, std::string prefix) : file_(file), prefix_(std::move(prefix)) {}
  void read_f32(const std::string& name, const std::vector<int64_t>& shape, float* out) const override {
    file_.read_into(prefix_ + name, "F32", shape, out);
  }
  int64_t read_i64(const std::string& name) const override {
    int64_t value = 0;
    file_.read_into(prefix_ + name, "I64", {}, &value);
    return value;
  }

 private:
  const SafetensorsFile& file_;
  std::string prefix_;
};

std::string optimizer_prefix(size_t entry) { return "optimizers." + std::to_string(entry) + "."; }

void flatten(const nlohmann::json& j, const std::string& key, std::map<std::string, nlohmann::json>& out) {
  if (j.is_object() && !j.empty()) {
    for (const auto& [k, v] : j.items()) flatten(v, key.empty() ? k : key + "." + k, out);
  } else if (j.is_array() && !j.empty() && (j.front().is_object() || j.front().is_array())) {
    for (size_t i = 0; i < j.size(); ++i) flatten(j[i], key + "[" + std::to_string(i) + "]", out);
  } else {
    out[key] = j;
  }
}

}  // namespace

std::filesystem::path checkpoint_dir(const std::filesystem::path& run_dir) { return run_dir / "checkpoints"; }

std::filesystem::path checkpoint_path(const std::filesystem::path& run_dir, int64_t step) {
  return checkpoint_dir(run_dir) / fmt::format("step_{:06d}.safetensors", step);
}

std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(const std::filesystem::path& dir) {
  std::vector<std::pair<int64_t, std::filesystem::path>> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return out;
  static const std::regex name("step_([0-9]{6,18})\\.safetensors");
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string file = entry.path().filename().string();
    if (std::regex_match(file, m, name)) out.emplace_back(std::stoll(m[1].str()), entry.path());
  }
  if (ec) throw UserError("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

void prune_checkpoints(const std::filesystem::path& dir, int64_t keep) {
  if (keep <= 0) return;
  auto all = list_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove(all[i].second, ec);
    if (ec) throw UserError("cannot remove the old checkpoint " + all[i].second.string() + ": " + ec.message());
  }
}

std::string superseded_dir_name(int64_t step) { return fmt::format("superseded-after-step_{:06d}", step); }

int set_aside_later_checkpoints(const std::filesystem::path& dir, int64_t step) {
  int moved = 0;
  for (const auto& [s, path] : list_checkpoints(dir)) {
    if (s <= step) continue;
    const std::filesystem::path aside = dir / superseded_dir_name(step);
    std::error_code ec;
    std::filesystem::create_directories(aside, ec);
    if (!ec) std::filesystem::rename(path, aside / path.filename(), ec);
    if (ec) throw UserError("cannot move the superseded checkpoint " + path.string() + " to " + aside.string() + ": " + ec.message());
    ++moved;
  }
  return moved;
}

int remove_checkpoint_temporaries(const std::filesystem::path& dir) {
  int removed = 0;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return 0;
  std::vector<std::filesystem::path> doomed;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (is_atomic_temporary(entry.path().filename())) doomed.push_back(entry.path());
  for (const auto& p : doomed) {
    std::filesystem::remove(p, ec);
    if (ec) throw UserError("cannot remove " + p.string() + ": " + ec.message());
    ++removed;
  }
  return removed;
}

void save_checkpoint(const std::filesystem::path& path, bool writer, const nlohmann::json& resolved_config, int world,
                     model::Model& model, const std::vector<std::unique_ptr<optim::Optimizer>>& optimizers,
                     const TrainState& state) {
  std::vector<std::vector<optim::StateTensor>> states;
  for (const auto& o : optimizers) states.push_back(o->export_state());  // collective
  if (!writer) return;
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) throw UserError("cannot create " + path.parent_path().string() + ": " + ec.message());

  std::vector<SafetensorsTensor> tensors;
  const auto& specs = model.layout().params();
  std::vector<float> host;  // the parameters' host copy when they live on the device
  const float* params = model.params();
  if (model.device() != Device::cpu) {
    host.resize(static_cast<size_t>(model.layout().total_numel()));
    device_copy(host.data(), model.params(), host.size() * sizeof(float));
    params = host.data();
  }
  for (const model::ParamSpec& s : specs)
    tensors.push_back({s.name, "F32", s.shape, params + s.offset, static_cast<size_t>(s.numel) * sizeof(float)});
  nlohmann::json types = nlohmann::json::array();
  for (size_t e = 0; e < states.size(); ++e) {
    types.push_back(optimizers[e]->type());
    for (const optim::StateTensor& t : states[e]) {
      if (t.is_i64())
        tensors.push_back({optimizer_prefix(e) + t.name, "I64", t.shape, t.i64.data(), t.i64.size() * sizeof(int64_t)});
      else
        tensors.push_back({optimizer_prefix(e) + t.name, "F32", t.shape, t.f32.data(), t.f32.size() * sizeof(float)});
    }
  }
  const std::string config_text = resolved_config.dump();
  std::map<std::string, std::string> metadata = {
      {"speedrun.format", kCheckpointFormat},
      {"speedrun.step", std::to_string(state.step)},
      {"speedrun.config", config_text},
      {"speedrun.config_hash", fmt::format("{:016x}", fnv1a_64(config_text))},
      {"speedrun.world_size", std::to_string(world)},
      {"speedrun.version", SPEEDRUN_VERSION},
      {"speedrun.commit", SPEEDRUN_GIT_COMMIT},
      {"speedrun.optimizers", types.dump()},
      {"speedrun.train_state", state.to_json().dump()},
      {"speedrun.rng", "none: no random numbers are drawn after initialization (speedrun.config has the seed)"},
  };
  write_safetensors(path, tensors, metadata);
}

std::filesystem::path resolve_checkpoint(const std::filesystem::path& arg) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(arg, ec)) return arg;
  if (!std::filesystem::is_directory(arg, ec))
    throw UserError(arg.string() + ": no such checkpoint file or run directory");
  const auto all = list_checkpoints(checkpoint_dir(arg));
  if (all.empty())
    throw UserError(arg.string() + ": the run directory has no checkpoint (" + checkpoint_dir(arg).string() +
                    "/step_*.safetensors)");
  return all.back().second;
}

Checkpoint Checkpoint::open(const std::filesystem::path& path) {
  Checkpoint c(SafetensorsFile::open(path));
  const SafetensorsFile& f = c.file_;
  const std::string format = f.metadata().count("speedrun.format") ? f.metadata_at("speedrun.format") : "";
  if (format != kCheckpointFormat)
    throw UserError(path.string() + ": not a speedrun checkpoint (metadata speedrun.format is \"" + format +
                    "\", expected \"" + kCheckpointFormat + "\")");
  try {
    c.config_ = nlohmann::json::parse(f.metadata_at("speedrun.config"));
    c.step_ = std::stoll(f.metadata_at("speedrun.step"));
    c.world_ = std::stoi(f.metadata_at("speedrun.world_size"));
  } catch (const nlohmann::json::exception& e) {
    throw UserError(path.string() + ": metadata speedrun.config is not JSON: " + e.what());
  } catch (const std::logic_error&) {  // std::stoll / stoi
    throw UserError(path.string() + ": metadata speedrun.step or speedrun.world_size is not a number");
  }
  return c;
}

TrainState Checkpoint::state() const {
  const std::string where = path().string() + ": metadata speedrun.train_state";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(file_.metadata_at("speedrun.train_state"));
  } catch (const nlohmann::json::exception& e) {
    throw UserError(where + " is not JSON: " + e.what());
  }
  TrainState s = TrainState::from_json(j, where);
  if (s.step != step_) throw UserError(where + ": its step differs from speedrun.step");
  return s;
}

void Checkpoint::load_parameters(model::Model& model) const {
  const auto& specs = model.layout().params();
  std::vector<float> host(static_cast<size_t>(model.layout().total_numel()));
  for (const model::ParamSpec& s : specs) file_.read_into(s.name, "F32", s.shape, host.data() + s.offset);
  if (model.device() == Device::cpu)
    std::copy(host.begin(), host.end(), model.params());
  else
    device_copy(model.params(), host.data(), host.size() * sizeof(float));
  model.weights_changed();
}

void Checkpoint::load_optimizers(const std::vector<std::unique_ptr<optim::Optimizer>>& optimizers) const {
  for (size_t e = 0; e < optimizers.size(); ++e) optimizers[e]->import_state(FileStateSource(file_, optimizer_prefix(e)));
}

const std::vector<std::string>& resume_safe_keys() {
  static const std::vector<std::string> keys = {
      "name",           "train.val_every",        "train.val_every_final", "train.val_final_frac",
      "train.target_val_loss", "train.stop_at_target", "train.checkpoint_every", "train.keep_checkpoints",
      "train.threads",  "train.out_dir"};
  return keys;
}

std::vector<std::string> config_differences(const nlohmann::json& checkpoint_config, const nlohmann::json& config) {
  std::map<std::string, nlohmann::json> a, b;
  flatten(checkpoint_config, "", a);
  flatten(config, "", b);
  std::vector<std::string> out;
  const auto& safe = resume_safe_keys();
  auto consider = [&](const std::string& key) {
    if (std::find(safe.begin(), safe.end(), key) != safe.end()) return;
    const auto x = a.find(key), y = b.find(key);
    if (x == a.end() || y == b.end() || x->second != y->second) out.push_back(key);
  };
  for (const auto& [key, value] : a) consider(key);
  for (const auto& [key, value] : b)
    if (!a.count(key)) consider(key);
  return out;
}

void truncate_metrics(const std::filesystem::path& path, int64_t step, bool keep_validation_at_step) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return;
  const std::string text = read_text_file(path);
  std::string kept;
  size_t begin = 0, line_no = 0;
  bool found = step == 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) break;  // a partial last line (a kill mid-write): dropped
    ++line_no;
    const std::string line = text.substr(begin, end - begin);
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw UserError(fmt::format("{}:{}: not a JSON line; cannot cut the metrics at step {}", path.string(), line_no,
                                  step));
    }
    if (!record.is_object() || !record.contains("step") || !record["step"].is_number_integer())
      throw UserError(fmt::format("{}:{}: a record without a step; cannot cut the metrics at step {}", path.string(),
                                  line_no, step));
    const int64_t s = record["step"].get<int64_t>();
    // Kept: everything before step `step`'s training record, and that record. A
    // validation at `step` comes after the checkpoint in the run, so it goes — except
    // after a final checkpoint, which follows the final validation.
    if (s > step || (s == step && !record.contains("train_loss") && !keep_validation_at_step)) break;
    kept += line + "\n";
    begin = end + 1;
    if (s == step) {
      found = true;
      if (!keep_validation_at_step) break;
    }
  }
  if (!found)
    throw UserError(fmt::format("{}: holds no training record of step {} (the checkpoint's step); it does not belong "
                                "to this checkpoint's run",
                                path.string(), step));
  if (kept.size() != text.size()) write_text_file_atomic(path, kept);
}

}  // namespace speedrun::train
