// The run config: every setting of a training run, typed, with defaults and checks.
//
// Defaults are the Track 3 values (../shared/specs/model-track3.md, optimizers.md) so
// that a config only states what differs. Each struct lists its keys once in `bind`;
// see config/schema.h for how that one list reads, writes, overrides and documents.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "config/schema.h"

namespace speedrun::config {

struct ModelConfig {
  // Which model class (model/registry.h): track3 (../shared/specs/model-track3.md) or
  // record26 (model-record26.md). The keys below apply to both unless they say otherwise.
  std::string arch = "track3";
  int64_t vocab_size = 50257;          // token ids must be below this
  int64_t padded_vocab_size = 50304;   // rows of embedding and head (multiple of 128 upstream)
  int64_t n_layer = 12;
  int64_t d_model = 768;
  int64_t n_head = 6;
  int64_t head_dim = 128;
  int64_t mlp_ratio = 4;
  int64_t seq_len = 1024;
  // Upstream calls F.rms_norm without eps on bf16 activations; PyTorch computes it in
  // fp32 and (since pytorch#142848, January 2025) takes the default eps from fp32: its
  // machine epsilon 2^-23 (../shared/specs/model-track3.md, "Forward").
  double rmsnorm_eps = 0x1p-23;
  double attn_scale = 0.12;
  double rotary_base = 1024.0;
  std::string logit_softcap = "algebraic";  // algebraic: cap*z/sqrt(z^2+cap^2); sigmoid: cap*sigmoid(z/(T*sqrt(d)))
  double logit_cap = 15.0;
  double sigmoid_temperature = 7.5;
  // The precision the forward reads the embedding table in (the master table, its
  // gradient and the optimizer state stay f32). bf16 rounds the table as upstream stores
  // it; CUDA only.
  std::string embedding_dtype = "f32";
  // track3: the spec's init (proj zero, other weights N(0, 0.33/fan_in), biases zero).
  // torch_default: the Adam baseline #2's (proj zero, other Linear weights and biases
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as torch.nn.Linear). See model/param_layout.h.
  std::string init = "track3";
  // record26 only (../shared/specs/model-record26.md, "Attention mask"): documents start at
  // doc_separator; the sliding window is counted in attn_block_size-token blocks and grows to
  // window_tokens over the run; window_pattern gives each layer's window, L long or S short.
  int64_t doc_separator = 50256;
  int64_t attn_block_size = 128;
  int64_t window_tokens = 1728;
  std::string window_pattern = "LSSSLSSLSSSL";
  // record26 only (model-record26.md, "Optimizers"): the LM head product in training in FP8
  // as upstream's nanogpt::mm (e4m3 inputs and weights with the fixed scales sqrt(d)/448 and
  // 24/448, an e5m2 gradient with 1/448; model/fp8_head.h); evaluation uses the plain head.
  bool fp8_head = false;

  int64_t mlp_hidden() const { return mlp_ratio * d_model; }
  int64_t attn_dim() const { return n_head * head_dim; }

  template <class A>
  void bind(A& a) {
    a.field("arch", arch, one_of({"track3", "record26"}),
            "the architecture: track3 (the Track 3 optimizer benchmark GPT) or record26 (the Track 1 speedrun "
            "record #26: value embeddings, U-net skips, document-masked sliding-window attention; CUDA not yet run on a GPU)");
    a.field("vocab_size", vocab_size, in_range<int64_t>(2, kMaxInt32),
            "GPT-2 has 50257 tokens; data ids must be below this");
    a.field("padded_vocab_size", padded_vocab_size, in_range<int64_t>(2, kMaxInt32),
            "rows of the embedding and the LM head (>= vocab_size; upstream pads to a multiple of 128)");
    a.field("n_layer", n_layer, in_range<int64_t>(1, 1024), "transformer blocks");
    a.field("d_model", d_model, in_range<int64_t>(1, 65536), "model width d");
    a.field("n_head", n_head, in_range<int64_t>(1, 1024), "attention heads");
    a.field("head_dim", head_dim, in_range<int64_t>(4, 1024), "width of a head (a multiple of 4: half-truncated rotary)");
    a.field("mlp_ratio", mlp_ratio, in_range<int64_t>(1, 64), "MLP hidden width = mlp_ratio * d_model");
    a.field("seq_len", seq_len, in_range<int64_t>(1, 1 << 20), "tokens per sequence (positions restart at 0)");
    a.field("rmsnorm_eps", rmsnorm_eps, greater_than(0.0),
            "eps in rmsnorm; 2^-23 = 1.1920928955078125e-07 is upstream's effective value (F.rms_norm without eps "
            "computes bf16 inputs in fp32 and takes fp32's machine epsilon)");
    a.field("attn_scale", attn_scale, greater_than(0.0), "softmax scale of q.k (0.12, not 1/sqrt(head_dim))");
    a.field("rotary_base", rotary_base, greater_than(1.0), "rotary frequencies (1/base)^(j/(head_dim/4-1))");
    a.field("logit_softcap", logit_softcap, one_of({"algebraic", "sigmoid", "none"}),
            "algebraic: cap*z/sqrt(z^2+cap^2) (Track 3); sigmoid: cap*sigmoid(z/(T*sqrt(d))) (record #26)");
    a.field("logit_cap", logit_cap, in_range(0x1p-63, 0x1p63),
            "the cap: 15 for Track 3, 30 for record #26 (the algebraic cap squares it in fp32)");
    a.field("sigmoid_temperature", sigmoid_temperature, positive_f32(), "T of the sigmoid cap (7.5 in record #26)");
    a.field("embedding_dtype", embedding_dtype, one_of({"f32", "bf16"}),
            "precision the forward reads the embedding table in: f32, or bf16 (a bf16 copy of the f32 master table, "
            "refreshed after each optimizer step, as upstream stores the table in bf16; CUDA only)");
    a.field("init", init, one_of({"track3", "torch_default"}),
            "parameter init. Both: weights and biases named *proj* (attn.proj, mlp.proj, the head) zero, embedding "
            "N(0,1), gains 1. track3: other weights N(0, 0.33/fan_in), other biases 0; torch_default (the Adam "
            "baseline #2): other weights and biases uniform in +-1/sqrt(fan_in), PyTorch's nn.Linear default");
    a.field("doc_separator", doc_separator, in_range<int64_t>(0, kMaxInt32),
            "record26: the token that starts a document (50256, <|endoftext|>); attention stays within a document");
    a.field("attn_block_size", attn_block_size, in_range<int64_t>(1, 1 << 20),
            "record26: the sliding window is counted in blocks of this many tokens (128 upstream)");
    a.field("window_tokens", window_tokens, in_range<int64_t>(1, kMaxInt32),
            "record26: the long window at step s covers the smallest multiple of attn_block_size tokens >= "
            "max(1, window_tokens * s / train.steps) (1728 upstream: 128 -> 1792)");
    a.field("window_pattern", window_pattern, non_empty_string(),
            "record26: one letter per layer, L (long window) or S (short: half the long window's blocks, at least "
            "1); upstream's 12 layers: LSSSLSSLSSSL");
    a.field("fp8_head", fp8_head, any<bool>(),
            "record26: the LM head's product in training in FP8 as upstream (inputs and weights e4m3 with scales "
            "sqrt(d_model)/448 and 24/448, logits rounded to bf16, the logit gradient e5m2 with scale 1/448); "
            "validation and sampling use the plain head. The CPU emulates the FP8 rounding (f32 sums); CUDA runs "
            "it through cuBLASLt");
  }
};

struct DataConfig {
  std::string train_glob;  // resolved against the config file's directory
  std::string val_glob;
  int64_t val_tokens = 10485760;  // 20 x 524288
  int64_t epochs = 1;
  bool align_to_bos = false;  // record #26's document-aligned training sequences (data/loader.h)

  template <class A>
  void bind(A& a) {
    a.required("train_glob", train_glob, non_empty_string(),
               "training shards (.bin); relative paths are resolved against the config file's directory");
    a.required("val_glob", val_glob, non_empty_string(), "validation shards; the first val_tokens tokens are used");
    a.field("val_tokens", val_tokens, in_range<int64_t>(1, int64_t{1} << 48),
            "validation tokens (a multiple of seq_len); every one is evaluated, each process taking whole sequences");
    a.field("epochs", epochs, at_least<int64_t>(1),
            "passes over the training shards before the run stops with 'training data exhausted' (1 = upstream)");
    a.field("align_to_bos", align_to_bos, any<bool>(),
            "record #26's training loader: every training sequence of model.seq_len (+1) tokens starts at a document "
            "start (token 50256), sequences at least seq_len apart, found by upstream's rule in a window of 2 x "
            "train.batch_tokens; false: contiguous slices (Track 3). Validation is contiguous either way");
  }
};

struct TrainConfig {
  int64_t batch_tokens = 524288;  // global batch (all ranks, all micro-batches)
  int64_t micro_batch_seqs = 64;  // sequences per forward/backward on one rank
  int64_t steps = 3250;
  int64_t seed = 0;
  int64_t val_every = 125;
  int64_t val_every_final = 25;
  double val_final_frac = 0.1;
  std::optional<double> target_val_loss;
  bool stop_at_target = false;
  std::string device = "auto";
  std::string activation_dtype = "auto";  // auto: bf16 on CUDA, f32 on the CPU
  int64_t threads = 0;
  std::string out_dir = "runs";
  double grad_bucket_mb = 25.0;  // MiB per overlapped gradient collective (0: after the backward)
  int64_t checkpoint_every = 0;  // steps; 0: only at the end and on SIGINT/SIGTERM
  int64_t keep_checkpoints = 0;  // 0: all

  template <class A>
  void bind(A& a) {
    a.field("batch_tokens", batch_tokens, in_range<int64_t>(1, kMaxInt32 - 2),
            "tokens per optimizer step over all ranks (524288 in Track 3); a shard (at most 2^31 - 1 tokens) must "
            "hold batch_tokens + 2");
    a.field("micro_batch_seqs", micro_batch_seqs, in_range<int64_t>(1, kMaxInt32),
            "sequences per forward/backward on one rank; gradients accumulate over micro-batches");
    a.field("steps", steps, in_range<int64_t>(1, kMaxExactInteger),
            "optimizer steps (at most 2^53: the schedule divides step by steps in double)");
    a.field("seed", seed, at_least<int64_t>(0), "seed of the initialization (data order does not depend on it)");
    a.field("val_every", val_every, at_least<int64_t>(1), "validate every this many steps");
    a.field("val_every_final", val_every_final, at_least<int64_t>(1),
            "validate this often once step/steps >= 1 - val_final_frac");
    a.field("val_final_frac", val_final_frac, in_range(0.0, 1.0), "fraction of the run validated more often");
    a.field("target_val_loss", target_val_loss, optional_of(greater_than(0.0)),
            "target validation loss (3.28 in Track 3); the summary reports the first step at or below it");
    a.field("stop_at_target", stop_at_target, any<bool>(), "stop the run at the first validation at or below the target");
    a.field("device", device, one_of({"auto", "cpu", "cuda"}), "auto: CUDA when a device exists, else the CPU");
    a.field("activation_dtype", activation_dtype, one_of({"auto", "f32", "bf16"}),
            "storage of activations and matmul inputs (bf16 copies of the weight matrices); parameters, gradients "
            "and optimizer state are f32 always. auto: bf16 on CUDA, f32 on the CPU; bf16 is CUDA only");
    a.field("threads", threads, in_range<int64_t>(0, 4096), "CPU threads (0: all cores)");
    a.field("out_dir", out_dir, non_empty_string(), "runs are written to out_dir/<run name>/");
    a.field("grad_bucket_mb", grad_bucket_mb, in_range(0.0, 1048576.0),
            "several ranks: MiB of gradients per reduction bucket, each reduced as soon as the last micro-batch's "
            "backward has finished it, overlapped with the rest (25 as PyTorch DDP); 0 reduces everything after "
            "the backward (docs/distributed.md)");
    a.field("checkpoint_every", checkpoint_every, at_least<int64_t>(0),
            "write a checkpoint every this many steps to <run dir>/checkpoints/ (0: off); one is always written at "
            "the end of a run and on SIGINT/SIGTERM (docs/checkpoints.md)");
    a.field("keep_checkpoints", keep_checkpoints, at_least<int64_t>(0), "keep the newest this many checkpoints (0: all)");
  }
};

struct ScheduleConfig {
  double cooldown_frac = 0.7;
  int64_t warmup_steps = 0;
  double min_factor = 0.0;

  template <class A>
  void bind(A& a) {
    a.field("cooldown_frac", cooldown_frac, in_range(0.0, 1.0),
            "lr factor is 1 until step/steps reaches 1 - cooldown_frac, then falls linearly");
    a.field("warmup_steps", warmup_steps, at_least<int64_t>(0),
            "linear warm-up: the factor is multiplied by min(1, (step+1)/warmup_steps) (250 in the Adam baseline)");
    a.field("min_factor", min_factor, in_half_open(0.0, 1.0),
            "the factor the cooldown ends at (0 in Track 3, 0.1 in record #26)");
  }
};

// --- optimizer entries ------------------------------------------------------

struct AdamWSettings {
  static constexpr const char* type = "adamw";
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  // Where eps goes (optim/adamw.h): "v_hat", torch.optim.AdamW's sqrt(v / (1 - b2^t)) + eps;
  // "v", record #26's DistAdam: sqrt(v) + eps, the step scaled by sqrt(1 - b2^t) / (1 - b1^t).
  std::string eps_placement = "v_hat";

  template <class A>
  void bind(A& a) {
    a.field("betas", betas, each(fp32_below_one(), 2), "(beta1, beta2) as torch.optim.AdamW");
    a.field("eps", eps, positive_f32(), "added to sqrt(v_hat) or sqrt(v) (see eps_placement; in fp32)");
    a.field("eps_placement", eps_placement, one_of({"v_hat", "v"}),
            "v_hat: p -= lr/(1-b1^t) m / (sqrt(v/(1-b2^t)) + eps), torch.optim.AdamW (Track 3); v: p -= lr "
            "sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps), record #26's DistAdam (the same update but for eps)");
  }
};

struct MuonSettings {
  static constexpr const char* type = "muon";
  double momentum = 0.95;
  bool nesterov = true;
  std::optional<double> momentum_warmup_start;  // e.g. 0.85 in speedrun track 1
  int64_t momentum_warmup_steps = 0;
  std::string ns_preset = "cubic";                 // cubic: (2,-1.5,0.5) x 12; quintic: (3.4445,-4.7750,2.0315) x 5
  std::optional<std::vector<double>> ns_coefficients;  // overrides the preset's (a, b, c)
  std::optional<int64_t> ns_steps;                  // overrides the preset's step count
  std::string ns_precision = "auto";                // auto: fp32 on the CPU, bf16 on the GPU

  template <class A>
  void bind(A& a) {
    a.field("momentum", momentum, fp32_below_one(), "mu of buf = mu*buf + (1-mu)*G");
    a.field("nesterov", nesterov, any<bool>(), "update with (1-mu)*G + mu*buf instead of buf");
    a.field("momentum_warmup_start", momentum_warmup_start, optional_of(fp32_below_one()),
            "momentum at step 0, rising linearly to `momentum` over momentum_warmup_steps: mu(step) = (1 - f) start + "
            "f momentum, f = min(step / momentum_warmup_steps, 1), step 0-based (record #26: 0.85 over 300 steps)");
    a.field("momentum_warmup_steps", momentum_warmup_steps, at_least<int64_t>(0), "length of the momentum warm-up");
    a.field("ns_preset", ns_preset, one_of({"cubic", "quintic"}),
            "Newton-Schulz coefficients: cubic (2, -1.5, 0.5) x 12 steps, quintic (3.4445, -4.7750, 2.0315) x 5");
    a.field("ns_coefficients", ns_coefficients, optional_of(each(finite_f32(), 3)),
            "(a, b, c) of X = a X + (b A + c A^2) X, replacing the preset's");
    a.field("ns_steps", ns_steps, optional_of(in_range<int64_t>(1, 100)), "iterations, replacing the preset's");
    a.field("ns_precision", ns_precision, one_of({"auto", "fp32", "bf16"}),
            "precision of the iteration: bf16 rounds every product as the GPU does (emulated on the CPU)");
  }
};

// Newton-Muon (arXiv 2604.01472; Track 3 result #15): Muon whose gradients are first
// right-multiplied by (C + r I)^-1, C an EMA of the layer inputs' second moment X^T X / N.
// Every Muon setting applies to the update that follows.
struct NewtonMuonSettings : MuonSettings {
  static constexpr const char* type = "newton_muon";
  int64_t refresh_every = 64;
  double ema_beta = 0.05;
  double ridge = 0.2;
  double ridge_eps = 1e-8;
  double initial_scale = 0.001;
  int64_t mlp_proj_blocks = 4;
  std::vector<std::string> precondition = {"attn_qkv", "attn_proj", "mlp_fc", "mlp_proj"};

  template <class A>
  void bind(A& a) {
    MuonSettings::bind(a);
    a.field("refresh_every", refresh_every, at_least<int64_t>(1),
            "k: statistics are captured on steps s with (s+1) mod k == 0, and the inverse refreshed then");
    a.field("ema_beta", ema_beta, zero_or_unit_f32(), "beta of C = C + beta (A/count - C) at each refresh");
    a.field("ridge", ridge, any<double>(),
            "gamma of the ridge r = gamma tr(C)/n + ridge_eps added to C before the Cholesky inverse (negative "
            "values make the factorization fail: for tests only)");
    a.field("ridge_eps", ridge_eps, at_least(0.0), "added to the ridge");
    a.field("initial_scale", initial_scale, positive_f32(), "C starts as initial_scale * I");
    a.field("mlp_proj_blocks", mlp_proj_blocks, at_least<int64_t>(1),
            "mlp.proj's input is split into this many contiguous blocks, each with its own statistic and inverse");
    a.field("precondition", precondition, each(one_of({"attn_qkv", "attn_proj", "mlp_fc", "mlp_proj"})),
            "capture points whose matrices are preconditioned (attn_qkv: q, k, v share the normed hidden; "
            "attn_proj: the attention output; mlp_fc: the normed hidden; mlp_proj: relu(.)^2); the group's other "
            "matrices get plain Muon");
  }
};

// RMNP (arXiv 2603.20527): Nesterov momentum, then each row of the (out, in) matrix
// normalized to unit L2 norm, scaled by sqrt(max(1, out/in)).
struct RmnpSettings {
  static constexpr const char* type = "rmnp";
  double momentum = 0.95;
  bool nesterov = true;
  double eps = 1e-12;
  std::optional<double> momentum_warmup_start;  // Muon's warm-up rule (optim/momentum_warmup.h); not in the paper
  int64_t momentum_warmup_steps = 0;

  template <class A>
  void bind(A& a) {
    a.field("momentum", momentum, fp32_below_one(), "mu of buf = mu*buf + G");
    a.field("nesterov", nesterov, any<bool>(), "update with G + mu*buf instead of buf");
    a.field("eps", eps, positive_f32(), "rows are divided by max(||row||_2, eps) (in fp32)");
    a.field("momentum_warmup_start", momentum_warmup_start, optional_of(fp32_below_one()),
            "momentum at step 0, rising linearly to `momentum` over momentum_warmup_steps (Muon's rule in record "
            "#26; not part of RMNP's paper)");
    a.field("momentum_warmup_steps", momentum_warmup_steps, at_least<int64_t>(0), "length of the momentum warm-up");
  }
};

// Every optimizer type's settings. Adding an optimizer type: a settings struct with a
// `type` name and `bind`, one entry here, and a factory line in optim/registry.cpp.
using OptimizerSettings = std::variant<AdamWSettings, MuonSettings, NewtonMuonSettings, RmnpSettings>;

// The Muon settings of Muon and Newton-Muon entries; null for the others.
const MuonSettings* muon_settings_of(const OptimizerSettings& s);

struct OptimizerConfig {
  std::string type;                   // one of type_names()
  std::vector<std::string> params;    // glob patterns over parameter names
  double lr = 0.0;
  double weight_decay = 0.0;
  OptimizerSettings settings;

  // The `type` names of OptimizerSettings' alternatives, in order.
  static const std::vector<std::string>& type_names();
  // Makes `settings` the alternative named `type_name`; false when no alternative is.
  bool select_settings(const std::string& type_name);

  template <class A>
  void bind(A& a) {
    a.required("type", type, one_of(type_names()), "which optimizer");
    a.required("params", params, non_empty_list(),
               "parameter-name patterns (* matches any run of characters, ? one); every parameter must match "
               "exactly one optimizer entry");
    a.required("lr", lr, positive_f32(), "learning rate (multiplied by the schedule's factor; used in fp32)");
    a.field("weight_decay", weight_decay, at_least(0.0),
            "decoupled: p = p * (1 - lr * weight_decay), the factor in fp32: lr * weight_decay must be below 1, and "
            "when not 0, large enough that fp32 does not round the factor to 1 (> 2^-25)");
    std::visit([&a](auto& s) { s.bind(a); }, settings);
  }
};

// Reads one optimizer entry: picks the settings type from "type", then binds.
void read_optimizer_entry(JsonReader& r, OptimizerConfig& e);

// --- the whole run ------------------------------------------------------------

struct RunConfig {
  std::string name;  // defaults to the config file's stem
  std::string description;
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  ScheduleConfig schedule;
  std::vector<OptimizerConfig> optimizers;

  template <class A>
  void bind(A& a) {
    a.field("name", name, any<std::string>(), "run name prefix (default: the config file's name)");
    a.field("description", description, any<std::string>(), "free text, copied to the run directory");
    a.object("model", model, "the network");
    a.object("data", data, "token shards");
    a.object("train", train, "batching, length, validation, device");
    a.object("schedule", schedule, "the lr factor over steps");
    a.object_list("optimizers", optimizers, read_optimizer_entry, "optimizer entries");
  }
};

// One `--set key=value` override.
struct Override {
  std::string key;
  std::string value;
};
// Splits "a.b=c" (throws UserError when there is no '=').
Override parse_override(const std::string& text);

// Loads, overrides, validates and resolves a config file. Relative data paths in the
// file are resolved against the file's directory; relative paths given through --set
// against the current directory. Throws UserError naming the file, key and value.
RunConfig load_run_config(const std::filesystem::path& file, const std::vector<Override>& overrides = {});

// Parses JSON text (the file name is used in messages). Throws UserError with line and
// column on malformed JSON, and with the key path and lines on a repeated key
// (core/json_text.h).
json parse_json_text(const std::string& text, const std::string& filename);

// Applies overrides to raw JSON, each typed by the schema. Returns the keys set. A key
// given twice is a UserError naming both (as a key repeated in a file is).
std::vector<std::string> apply_overrides(json& raw, const std::vector<Override>& overrides);

// Validates raw JSON into a RunConfig (field checks plus cross-field checks). Throws
// UserError listing every problem, each naming its key path, and its line in `where`
// when `line_of` knows it.
RunConfig run_config_from_json(const json& raw, const std::string& where, const Errors::LineOf& line_of = {});

// The resolved config as JSON (every key, defaults included).
json to_json(const RunConfig& cfg);

// Markdown reference of every key (docs/config.md is this output).
std::string config_reference_markdown();

}  // namespace speedrun::config
