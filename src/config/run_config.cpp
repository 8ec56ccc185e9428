#include "config/run_config.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "core/json_text.h"

namespace speedrun::config {

namespace fs = std::filesystem;

namespace {
template <size_t I = 0>
void collect_type_names(std::vector<std::string>& out) {
  if constexpr (I < std::variant_size_v<OptimizerSettings>) {
    out.emplace_back(std::variant_alternative_t<I, OptimizerSettings>::type);
    collect_type_names<I + 1>(out);
  }
}
template <size_t I = 0>
bool select_alternative(OptimizerSettings& v, const std::string& name) {
  if constexpr (I < std::variant_size_v<OptimizerSettings>) {
    using Alt = std::variant_alternative_t<I, OptimizerSettings>;
    if (name == Alt::type) {
      v = Alt{};
      return true;
    }
    return select_alternative<I + 1>(v, name);
  }
  return false;
}
}  // namespace

const std::vector<std::string>& OptimizerConfig::type_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    collect_type_names(n);
    return n;
  }();
  return names;
}

bool OptimizerConfig::select_settings(const std::string& type_name) {
  return select_alternative(settings, type_name);
}

void read_optimizer_entry(JsonReader& r, OptimizerConfig& e) {
  // The settings alternative is chosen by "type" before binding, so that keys of
  // other optimizer types are reported as unknown keys of this one.
  const json& raw = r.raw();
  if (auto it = raw.find("type"); it != raw.end() && it->is_string()) e.select_settings(it->get<std::string>());
  e.bind(r);
}

Override parse_override(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UserError("--set '" + text + "': expected key=value, e.g. --set train.steps=100");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

json parse_json_text(const std::string& text, const std::string& filename) {
  return parse_json_strict(text, filename);
}

// --- --set --------------------------------------------------------------------

static json value_for_kind(const Override& o, const KeyInfo& info) {
  const std::string& v = o.value;
  auto fail = [&](const std::string& what) -> json {
    throw UserError("--set " + o.key + "=" + v + ": expected " + what);
  };
  if (info.nullable && v == "null") return nullptr;
  switch (info.kind) {
    case Kind::string: return v;
    case Kind::boolean:
      if (v == "true" || v == "1" || v == "yes") return true;
      if (v == "false" || v == "0" || v == "no") return false;
      return fail(info.expected);
    case Kind::integer:
    case Kind::number: {
      if (v.empty()) return fail(info.expected);
      errno = 0;
      char* end = nullptr;
      if (info.kind == Kind::integer) {
        const long long x = std::strtoll(v.c_str(), &end, 10);
        if (*end == '\0' && errno == 0) return static_cast<int64_t>(x);
        if (*end == '\0') return fail(info.expected + " (" + v + " is beyond the 64-bit integer range)");
        errno = 0;
      }
      const double d = std::strtod(v.c_str(), &end);
      if (*end != '\0' || errno != 0) return fail(info.expected);
      return d;  // the reader checks integrality and range and reports the key
    }
    case Kind::string_list: {
      // Either JSON ("[\"a\",\"b\"]") or comma-separated (a,b).
      if (!v.empty() && v.front() == '[') {
        try {
          return json::parse(v);
        } catch (const json::parse_error&) {
          return fail(info.expected + " (as JSON, e.g. [\"a\",\"b\"], or comma-separated)");
        }
      }
      json a = json::array();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) a.push_back(item);
      return a;
    }
    case Kind::number_list: {
      std::string text = v;
      if (text.empty() || text.front() != '[') text = "[" + text + "]";
      try {
        return json::parse(text);
      } catch (const json::parse_error&) {
        return fail(info.expected + " (e.g. 0.9,0.95 or [0.9,0.95])");
      }
    }
    default: return fail(info.expected);
  }
}

std::vector<std::string> apply_overrides(json& raw, const std::vector<Override>& overrides) {
  std::vector<std::string> set_keys;
  std::map<std::string, const Override*> seen;  // normalized path -> first override of it
  for (const Override& o : overrides) {
    const std::vector<std::string> segments = split_key_path(o.key);
    // Like a key repeated in a file: one of two values would be dropped unseen.
    std::string normalized;
    for (const std::string& s : segments) normalized += (normalized.empty() || s.front() == '[' ? "" : ".") + s;
    if (const auto [it, fresh] = seen.emplace(normalized, &o); !fresh)
      throw UserError("--set " + o.key + "=" + o.value + ": " + normalized + " is already set by --set " +
                      it->second->key + "=" + it->second->value + "; give each key once");
    RunConfig probe;
    KeyFinder finder(segments, raw);
    probe.bind(finder);
    finder.finish_lookup(segments[0]);
    if (!finder.result) throw UserError("--set " + o.key + "=" + o.value + ": " + finder.error);
    const json value = value_for_kind(o, *finder.result);
    // Walk (creating objects as needed) and assign.
    json* node = &raw;
    for (size_t i = 0; i + 1 < segments.size(); ++i) {
      const std::string& s = segments[i];
      if (s.front() == '[') {
        node = &(*node)[std::stoul(s.substr(1, s.size() - 2))];  // existence checked by the finder
      } else {
        if (!node->contains(s) || !(*node)[s].is_structured()) (*node)[s] = json::object();
        node = &(*node)[s];
      }
    }
    (*node)[segments.back()] = value;
    set_keys.push_back(o.key);
  }
  return set_keys;
}

// --- validation -----------------------------------------------------------------

// A further constraint on a field that was read already (model.rmsnorm_eps, model.attn_scale).
static void check_value(Errors& errors, const std::string& path, double v, const Constraint<double>& c) {
  if (!c.ok(v)) errors.add(path, "expected a number " + c.phrase + ", got " + format_number(v));
}

static void check_cross_fields(const RunConfig& c, Errors& errors) {
  const ModelConfig& m = c.model;
  // Both are used in fp32 (rmsnorm's mean(x^2) + eps, the score scale).
  check_value(errors, "model.rmsnorm_eps", m.rmsnorm_eps, positive_f32());
  check_value(errors, "model.attn_scale", m.attn_scale, positive_f32());
  if (m.arch == "record26") {
    // Upstream's list-based layer plan (model/record26.h) needs these; say so before a run.
    if (m.n_layer < 6 || m.n_layer % 2 != 0)
      errors.add("model.n_layer", "model.arch record26 needs an even number of layers >= 6 (U-net skips pair layer i "
                                  "with layer n_layer-1-i; value embeddings feed the first 3 and the last 3), got " +
                                      std::to_string(m.n_layer));
    if (static_cast<int64_t>(m.window_pattern.size()) != m.n_layer ||
        m.window_pattern.find_first_not_of("LS") != std::string::npos)
      errors.add("model.window_pattern", "must be one letter L or S per layer (" + std::to_string(m.n_layer) +
                                             " for model.n_layer), got '" + m.window_pattern + "'");
    if (m.doc_separator >= m.vocab_size)
      errors.add("model.doc_separator", "must be a token id below model.vocab_size (" + std::to_string(m.vocab_size) +
                                            "), got " + std::to_string(m.doc_separator));
  }
  if (m.fp8_head && m.arch != "record26")
    errors.add("model.fp8_head", "is a record #26 head (model.arch record26); model.arch is " + m.arch);
  if (m.padded_vocab_size < m.vocab_size)
    errors.add("model.padded_vocab_size", "must be >= model.vocab_size (" + std::to_string(m.vocab_size) + "), got " +
                                              std::to_string(m.padded_vocab_size));
  if (m.head_dim % 4 != 0)
    errors.add("model.head_dim", "must be a multiple of 4 (half-truncated rotary), got " + std::to_string(m.head_dim));
  const TrainConfig& t = c.train;
  const int64_t micro_tokens = t.micro_batch_seqs * m.seq_len;  // <= 2^31 * 2^20: no overflow
  if (micro_tokens > kMaxInt32)
    errors.add("train.micro_batch_seqs", "train.micro_batch_seqs * model.seq_len = " + std::to_string(micro_tokens) +
                                             " tokens per micro-batch exceeds 2^31 - 1, the largest matrix dimension "
                                             "BLAS and cuBLAS take; got micro_batch_seqs " +
                                             std::to_string(t.micro_batch_seqs));
  else if (t.batch_tokens % micro_tokens != 0)
    errors.add("train.batch_tokens", "must be a multiple of train.micro_batch_seqs * model.seq_len = " +
                                         std::to_string(micro_tokens) + ", got " + std::to_string(t.batch_tokens));
  if (c.data.val_tokens % m.seq_len != 0)
    errors.add("data.val_tokens", "must be a multiple of model.seq_len = " + std::to_string(m.seq_len) + ", got " +
                                      std::to_string(c.data.val_tokens));
  // Aligned sequences start at the document token 50256 (data/loader.h).
  if (c.data.align_to_bos && m.vocab_size <= 50256)
    errors.add("data.align_to_bos", "sequences start at the document token 50256, which model.vocab_size = " +
                                        std::to_string(m.vocab_size) + " excludes (ids must be below it)");
  if (t.stop_at_target && !t.target_val_loss)
    errors.add("train.stop_at_target", "is true but train.target_val_loss is not set");
  if (c.optimizers.empty()) errors.add("optimizers", "at least one optimizer entry is required");
  for (size_t i = 0; i < c.optimizers.size(); ++i) {
    const OptimizerConfig& o = c.optimizers[i];
    const std::string at = index_path("optimizers", i);
    // The decay factor 1 - lr * weight_decay is applied in fp32 (at the peak lr; the
    // schedule only lowers it): >= 1 would zero or flip the parameters, and a product so
    // small that fp32 rounds the factor to 1 would be a decay that does nothing.
    const double lr_wd = o.lr * o.weight_decay;
    if (lr_wd >= 1.0)
      errors.add(at + ".weight_decay", "lr * weight_decay = " + format_number(lr_wd) +
                                           " must be below 1 (p = p * (1 - lr * weight_decay)), got weight_decay " +
                                           format_number(o.weight_decay) + " with lr " + format_number(o.lr));
    else if (lr_wd > 0.0 && static_cast<float>(1.0 - lr_wd) == 1.0f)
      errors.add(at + ".weight_decay", "lr * weight_decay = " + format_number(lr_wd) +
                                           " vanishes in fp32 (1 - lr * weight_decay rounds to 1 below 2^-25 = " +
                                           format_number(0x1p-25) + "): the decay would do nothing; got weight_decay " +
                                           format_number(o.weight_decay) + " with lr " + format_number(o.lr) +
                                           " (use 0 for no decay)");
    if (const auto* nm = std::get_if<NewtonMuonSettings>(&o.settings)) {
      const auto& pre = nm->precondition;
      const bool proj = std::find(pre.begin(), pre.end(), "mlp_proj") != pre.end();
      if (proj && m.mlp_hidden() % nm->mlp_proj_blocks != 0)
        errors.add(at + ".mlp_proj_blocks", "must divide the MLP width model.mlp_ratio * model.d_model = " +
                                                std::to_string(m.mlp_hidden()) + ", got " +
                                                std::to_string(nm->mlp_proj_blocks));
    }
    if (const MuonSettings* mu = muon_settings_of(o.settings)) {
      if (mu->momentum_warmup_start && mu->momentum_warmup_steps == 0)
        errors.add(index_path("optimizers", i) + ".momentum_warmup_steps",
                   "must be >= 1 when momentum_warmup_start is set");
    }
    if (const auto* rm = std::get_if<RmnpSettings>(&o.settings)) {
      if (rm->momentum_warmup_start && rm->momentum_warmup_steps == 0)
        errors.add(index_path("optimizers", i) + ".momentum_warmup_steps",
                   "must be >= 1 when momentum_warmup_start is set");
    }
  }
}

const MuonSettings* muon_settings_of(const OptimizerSettings& s) {
  if (const auto* m = std::get_if<MuonSettings>(&s)) return m;
  if (const auto* n = std::get_if<NewtonMuonSettings>(&s)) return n;
  return nullptr;
}

RunConfig run_config_from_json(const json& raw, const std::string& where, const Errors::LineOf& line_of) {
  Errors errors;
  RunConfig cfg;
  if (!raw.is_object()) {
    errors.add("", "expected a JSON object at the top level, got " + describe_value(raw));
    errors.throw_if_any(where, line_of);
  }
  JsonReader reader(raw, "", errors);
  cfg.bind(reader);
  reader.finish();
  if (!raw.contains("optimizers")) errors.add("optimizers", "required key is missing (a list of optimizer entries)");
  if (!raw.contains("data")) errors.add("data", "required key is missing (train_glob and val_glob)");
  if (errors.empty()) check_cross_fields(cfg, errors);
  errors.throw_if_any(where, line_of);
  return cfg;
}

static std::string resolve_path(const std::string& p, const fs::path& base) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (base / p).lexically_normal().string();
}

// The line of a key path in the config file, for messages: the key's own line, else (a
// key that is missing, or a default that a cross-field check names) the line of the
// nearest enclosing key or list element that is in the file. 0 for a key --set gave (the
// file's line would point at a value that is not the one used) or one not in the file.
static size_t line_in_file(const std::map<std::string, size_t>& lines, const std::vector<std::string>& set_paths,
                           std::string path) {
  for (const std::string& set : set_paths)
    if (path == set || path.starts_with(set + ".") || path.starts_with(set + "[")) return 0;
  while (!path.empty()) {
    if (const auto it = lines.find(path); it != lines.end()) return it->second;
    const size_t cut = path.find_last_of(".[");
    if (cut == std::string::npos) break;
    path.resize(cut);
  }
  return 0;
}

RunConfig load_run_config(const fs::path& file, const std::vector<Override>& overrides) {
  const std::string text = read_text_file(file);
  json raw = parse_json_text(text, file.string());
  if (!raw.is_object()) throw UserError(file.string() + ":1: expected a JSON object at the top level");
  const std::vector<std::string> set_keys = apply_overrides(raw, overrides);
  std::vector<std::string> set_paths;  // as error messages write them ("optimizers[1].lr")
  for (const Override& o : overrides) {
    std::string path;
    for (const std::string& s : split_key_path(o.key)) path += (path.empty() || s.front() == '[' ? "" : ".") + s;
    set_paths.push_back(path);
  }
  const std::map<std::string, size_t> lines = value_lines(text);
  RunConfig cfg;
  try {
    cfg = run_config_from_json(raw, file.string(),
                               [&](const std::string& path) { return line_in_file(lines, set_paths, path); });
  } catch (const UserError& e) {
    // A problem with a value that came from --set names the --set, not only the file
    // (which may hold a valid value for that key).
    std::istringstream lines(e.what());
    std::string msg, line;
    while (std::getline(lines, line)) {
      if (!msg.empty()) msg += '\n';
      msg += line;
      const size_t start = line.find_first_not_of(' ');
      for (const Override& o : overrides)
        if (start != std::string::npos && line.compare(start, o.key.size() + 1, o.key + ":") == 0)
          msg += " (from --set " + o.key + "=" + o.value + ")";
    }
    throw UserError(msg);
  }
  if (cfg.name.empty()) cfg.name = file.stem().string();
  // Paths written in the file are relative to the file; paths given on the command
  // line are relative to where the command runs.
  const fs::path file_dir = fs::absolute(file).parent_path();
  const fs::path cwd = fs::current_path();
  auto base_for = [&](const std::string& key) {
    return std::find(set_keys.begin(), set_keys.end(), key) != set_keys.end() ? cwd : file_dir;
  };
  cfg.data.train_glob = resolve_path(cfg.data.train_glob, base_for("data.train_glob"));
  cfg.data.val_glob = resolve_path(cfg.data.val_glob, base_for("data.val_glob"));
  return cfg;
}

json to_json(const RunConfig& cfg) {
  RunConfig copy = cfg;
  JsonWriter w;
  copy.bind(w);
  return w.out;
}

std::string config_reference_markdown() {
  std::ostringstream md;
  auto table = [&md](const std::vector<ReferenceRow>& rows) {
    md << "| key | expects | default | meaning |\n|---|---|---|---|\n";
    for (const ReferenceRow& r : rows)
      md << "| `" << r.path << "` | " << r.expected << " | `" << r.default_value << "` | " << r.doc << " |\n";
    md << "\n";
  };
  md << "# Run config reference\n\n"
        "Generated by `speedrun validate-config --reference`; do not edit by hand.\n"
        "Every key is optional unless marked (required); defaults are the Track 3 values.\n"
        "Unknown keys are errors. Override any key with `--set key=value`, e.g.\n"
        "`--set train.steps=100 --set optimizers[1].lr=0.02`.\n\n";
  {
    RunConfig c;
    std::vector<ReferenceRow> rows;
    ReferenceWriter w("", rows);
    c.bind(w);
    md << "## Run\n\n";
    table(rows);
  }
  md << "## Optimizer entries (`optimizers[i]`)\n\n"
        "`optimizers` is a list; each entry names its `type`, the parameters it owns (name patterns) and its settings. "
        "Parameter names are as in upstream PyTorch: `embed.weight`, `blocks.3.attn.q.weight`, `blocks.3.mlp.fc.bias`, "
        "`blocks.3.norm1.gains`, `norm1.gains`, `norm2.gains`, `proj.weight` (the LM head), `proj.bias`.\n\n";
  for (const std::string& type_name : OptimizerConfig::type_names()) {
    OptimizerConfig e;
    e.type = type_name;
    e.select_settings(type_name);
    std::vector<ReferenceRow> rows;
    ReferenceWriter w("", rows);
    e.bind(w);
    md << "### type \"" << type_name << "\"\n\n";
    table(rows);
  }
  return md.str();
}

}  // namespace speedrun::config
