// Run-config parsing, validation, overrides and the resolved output.
#include <gtest/gtest.h>

#include "test_support.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "config/run_config.h"
#include "core/json_text.h"
#include "core/error.h"

namespace cfg = speedrun::config;
using speedrun::UserError;
using nlohmann::json;

namespace {

json minimal() {
  return json::parse(R"({
    "data": {"train_glob": "train_*.bin", "val_glob": "val_*.bin"},
    "optimizers": [
      {"type": "adamw", "params": ["embed.weight", "proj.*", "*.bias", "*gains"], "lr": 0.01},
      {"type": "muon", "params": ["blocks.*.weight"], "lr": 0.025, "weight_decay": 0.05}
    ]
  })");
}

using speedrun::test::error_of;

std::string parse_error(const json& j) {
  return error_of([&] { cfg::run_config_from_json(j, "x.json"); });
}

}  // namespace

TEST(ConfigParse, DefaultsAreTrack3) {
  const cfg::RunConfig c = cfg::run_config_from_json(minimal(), "x.json");
  EXPECT_EQ(c.model.n_layer, 12);
  EXPECT_EQ(c.model.d_model, 768);
  EXPECT_EQ(c.model.padded_vocab_size, 50304);
  EXPECT_DOUBLE_EQ(c.model.attn_scale, 0.12);
  // fp32's machine epsilon: F.rms_norm's default eps on bf16 inputs (computed in fp32).
  EXPECT_EQ(c.model.rmsnorm_eps, 1.1920928955078125e-07);
  EXPECT_EQ(c.model.rmsnorm_eps, static_cast<double>(std::numeric_limits<float>::epsilon()));
  EXPECT_EQ(c.model.init, "track3");
  EXPECT_EQ(c.train.batch_tokens, 524288);
  EXPECT_EQ(c.train.val_every, 125);
  EXPECT_DOUBLE_EQ(c.schedule.cooldown_frac, 0.7);
  ASSERT_EQ(c.optimizers.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<cfg::AdamWSettings>(c.optimizers[0].settings));
  const auto& muon = std::get<cfg::MuonSettings>(c.optimizers[1].settings);
  EXPECT_DOUBLE_EQ(muon.momentum, 0.95);
  EXPECT_EQ(muon.ns_preset, "cubic");
}

TEST(ConfigParse, OutOfRangeNamesPathAndValue) {
  json j = minimal();
  j["optimizers"][1]["lr"] = -0.1;
  EXPECT_NE(parse_error(j).find("optimizers[1].lr: expected a number > 0 and a normal fp32 number "
                                "(1.175494351e-38 to 3.402823466e+38), got -0.1"),
            std::string::npos)
      << parse_error(j);
}

TEST(ConfigParse, WrongTypeNamesPath) {
  json j = minimal();
  j["train"]["steps"] = "many";
  EXPECT_NE(parse_error(j).find("train.steps: expected an integer in [1, 9.007199255e+15], got \"many\""), std::string::npos)
      << parse_error(j);
  j = minimal();
  j["train"]["steps"] = 2.5;
  EXPECT_NE(parse_error(j).find("train.steps: expected an integer"), std::string::npos);
  j = minimal();
  j["model"] = 3;
  EXPECT_NE(parse_error(j).find("model: expected an object, got 3"), std::string::npos);
}

TEST(ConfigParse, IntegralFloatAcceptedForIntegers) {
  json j = minimal();
  j["train"]["batch_tokens"] = 5.24288e5;
  EXPECT_EQ(cfg::run_config_from_json(j, "x").train.batch_tokens, 524288);
}

TEST(ConfigParse, UnknownKeyIsErrorWithSuggestion) {
  json j = minimal();
  j["model"]["n_layers"] = 4;
  const std::string e = parse_error(j);
  EXPECT_NE(e.find("model.n_layers: unknown key (did you mean 'n_layer'?)"), std::string::npos) << e;
  j = minimal();
  j["trian"] = json::object();
  EXPECT_NE(parse_error(j).find("trian: unknown key (did you mean 'train'?)"), std::string::npos);
}

TEST(ConfigParse, KeysOfAnotherOptimizerTypeAreUnknown) {
  json j = minimal();
  j["optimizers"][0]["momentum"] = 0.9;  // a Muon key on an AdamW entry
  EXPECT_NE(parse_error(j).find("optimizers[0].momentum: unknown key"), std::string::npos) << parse_error(j);
}

TEST(ConfigParse, UnknownOptimizerType) {
  json j = minimal();
  j["optimizers"][1]["type"] = "sgd";
  EXPECT_NE(parse_error(j).find("optimizers[1].type: expected a string one of \"adamw\", \"muon\""),
            std::string::npos)
      << parse_error(j);
}

TEST(ConfigParse, MissingRequiredKeys) {
  json j = minimal();
  j["optimizers"][0].erase("lr");
  j["data"].erase("val_glob");
  const std::string e = parse_error(j);
  EXPECT_NE(e.find("optimizers[0].lr: required key is missing"), std::string::npos) << e;
  EXPECT_NE(e.find("data.val_glob: required key is missing"), std::string::npos) << e;
  EXPECT_NE(e.find("2 problems"), std::string::npos) << e;
  json no_opt = minimal();
  no_opt.erase("optimizers");
  EXPECT_NE(parse_error(no_opt).find("optimizers: required key is missing"), std::string::npos);
}

TEST(ConfigParse, CrossFieldChecks) {
  json j = minimal();
  j["model"]["padded_vocab_size"] = 100;
  EXPECT_NE(parse_error(j).find("model.padded_vocab_size: must be >= model.vocab_size"), std::string::npos);
  j = minimal();
  j["train"]["batch_tokens"] = 1000;
  EXPECT_NE(parse_error(j).find("train.batch_tokens: must be a multiple of"), std::string::npos);
  j = minimal();
  j["model"]["head_dim"] = 6;
  EXPECT_NE(parse_error(j).find("model.head_dim: must be a multiple of 4"), std::string::npos);
  j = minimal();
  j["train"]["stop_at_target"] = true;
  EXPECT_NE(parse_error(j).find("train.stop_at_target"), std::string::npos);
  j = minimal();
  j["optimizers"] = json::array();
  EXPECT_NE(parse_error(j).find("at least one optimizer"), std::string::npos);
}

TEST(ConfigParse, TopLevelMustBeObject) {
  EXPECT_NE(parse_error(json::array()).find("expected a JSON object"), std::string::npos);
}

TEST(ConfigJson, MalformedJsonGivesLineAndColumn) {
  const std::string e = error_of([] { cfg::parse_json_text("{\n  \"a\": 1,\n  \"b\": }\n", "bad.json"); });
  EXPECT_NE(e.find("bad.json:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("malformed JSON"), std::string::npos) << e;
}

TEST(ConfigOverride, TypedBySchema) {
  json j = minimal();
  cfg::apply_overrides(j, {{"train.steps", "100"},
                           {"model.logit_softcap", "sigmoid"},
                           {"train.target_val_loss", "3.28"},
                           {"train.stop_at_target", "true"},
                           {"optimizers[1].lr", "0.02"},
                           {"optimizers[1].ns_preset", "quintic"},
                           {"optimizers[0].betas", "0.8,0.95"},
                           {"optimizers[0].params", "embed.weight,proj.*,*.bias,*gains"},
                           {"data.train_glob", "123"}});
  const cfg::RunConfig c = cfg::run_config_from_json(j, "x");
  EXPECT_EQ(c.train.steps, 100);
  EXPECT_EQ(c.model.logit_softcap, "sigmoid");
  ASSERT_TRUE(c.train.target_val_loss.has_value());
  EXPECT_DOUBLE_EQ(*c.train.target_val_loss, 3.28);
  EXPECT_DOUBLE_EQ(c.optimizers[1].lr, 0.02);
  EXPECT_EQ(std::get<cfg::MuonSettings>(c.optimizers[1].settings).ns_preset, "quintic");
  EXPECT_EQ(std::get<cfg::AdamWSettings>(c.optimizers[0].settings).betas, (std::vector<double>{0.8, 0.95}));
  EXPECT_EQ(c.optimizers[0].params.size(), 4u);
  EXPECT_EQ(c.data.train_glob, "123");  // a string key stays a string
  // null clears an optional
  cfg::apply_overrides(j, {{"train.target_val_loss", "null"}, {"train.stop_at_target", "false"}});
  EXPECT_FALSE(cfg::run_config_from_json(j, "x").train.target_val_loss.has_value());
}

TEST(ConfigOverride, BadOverridesNameTheKey) {
  auto err = [](const std::string& key, const std::string& value) {
    json j = minimal();
    return error_of([&] { cfg::apply_overrides(j, {{key, value}}); });
  };
  EXPECT_NE(err("train.steps", "abc").find("--set train.steps=abc: expected an integer"), std::string::npos);
  EXPECT_NE(err("model.n_layers", "3").find("unknown key 'n_layers' (did you mean 'n_layer'?)"), std::string::npos)
      << err("model.n_layers", "3");
  EXPECT_NE(err("optimizers[5].lr", "1").find("optimizers[5] does not exist (the list has 2 entries)"),
            std::string::npos);
  EXPECT_NE(err("optimizers[0].momentum", "0.9").find("unknown key 'momentum'"), std::string::npos)
      << err("optimizers[0].momentum", "0.9");
  EXPECT_NE(err("model", "3").find("is an object"), std::string::npos);
  EXPECT_NE(err("train.stop_at_target", "maybe").find("expected true or false"), std::string::npos);
  EXPECT_NE(err("a..b", "1").find("malformed key path"), std::string::npos);
  EXPECT_NE(error_of([] { cfg::parse_override("novalue"); }).find("expected key=value"), std::string::npos);
}

TEST(ConfigOverride, RangeCheckedAfterOverride) {
  json j = minimal();
  cfg::apply_overrides(j, {{"optimizers[1].lr", "-1"}});
  EXPECT_NE(parse_error(j).find("optimizers[1].lr: expected a number > 0 and a normal fp32 number"), std::string::npos)
      << parse_error(j);
}

TEST(ConfigOutput, ResolvedJsonRoundTrips) {
  const cfg::RunConfig c = cfg::run_config_from_json(minimal(), "x");
  const json out = cfg::to_json(c);
  EXPECT_EQ(out["model"]["n_layer"], 12);
  EXPECT_TRUE(out["train"]["target_val_loss"].is_null());
  EXPECT_EQ(out["optimizers"][1]["ns_preset"], "cubic");
  // The resolved output is itself a valid config that resolves to the same thing.
  EXPECT_EQ(cfg::to_json(cfg::run_config_from_json(out, "resolved")), out);
}

TEST(ConfigOutput, ReferenceListsEveryKey) {
  const std::string md = cfg::config_reference_markdown();
  for (const char* key : {"`model.n_layer`", "`train.steps`", "`schedule.cooldown_frac`", "`data.train_glob`",
                          "`betas`", "`ns_preset`", "`momentum_warmup_start`"})
    EXPECT_NE(md.find(key), std::string::npos) << key;
}

TEST(ConfigFile, PathsResolveAgainstConfigDirectory) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("speedrun-config-test-" + std::to_string(::getpid()));
  fs::create_directories(dir / "sub");
  const fs::path file = dir / "sub" / "run.json";
  std::ofstream(file) << minimal().dump();
  const cfg::RunConfig c = cfg::load_run_config(file, {{"data.val_glob", "v/*.bin"}});
  EXPECT_EQ(c.name, "run");
  EXPECT_EQ(c.data.train_glob, (fs::canonical(dir / "sub") / "train_*.bin").string());
  EXPECT_EQ(c.data.val_glob, (fs::current_path() / "v/*.bin").lexically_normal().string());
  fs::remove_all(dir);
  EXPECT_NE(error_of([&] { cfg::load_run_config(file); }).find("cannot read " + file.string()), std::string::npos);
}

TEST(ConfigParse, InitRule) {
  json j = minimal();
  j["model"]["init"] = "torch_default";
  EXPECT_EQ(cfg::run_config_from_json(j, "x.json").model.init, "torch_default");
  j["model"]["init"] = "kaiming";
  EXPECT_NE(parse_error(j).find("model.init: expected a string one of \"track3\", \"torch_default\", got \"kaiming\""),
            std::string::npos)
      << parse_error(j);
}

TEST(ConfigParse, PrecisionSettings) {
  const cfg::RunConfig c = cfg::run_config_from_json(minimal(), "x.json");
  EXPECT_EQ(c.model.embedding_dtype, "f32");
  EXPECT_EQ(c.train.activation_dtype, "auto");
  json j = minimal();
  j["model"]["embedding_dtype"] = "fp16";
  EXPECT_NE(parse_error(j).find("model.embedding_dtype: expected a string one of \"f32\", \"bf16\", got \"fp16\""),
            std::string::npos)
      << parse_error(j);
  j = minimal();
  j["train"]["activation_dtype"] = "f16";
  EXPECT_NE(parse_error(j).find("train.activation_dtype: expected a string one of \"auto\", \"f32\", \"bf16\""),
            std::string::npos)
      << parse_error(j);
  j = minimal();
  j["train"]["activation_dtype"] = "bf16";
  j["model"]["embedding_dtype"] = "bf16";
  const cfg::RunConfig b = cfg::run_config_from_json(j, "x.json");
  EXPECT_EQ(b.train.activation_dtype, "bf16");
  EXPECT_EQ(b.model.embedding_dtype, "bf16");
}

// --- issue 12, section 3: accepted input that is not what was written ----------------

namespace {
// The config text of minimal() with "lr" written twice in optimizers[1] (line 6 and 7).
const char* kDuplicateLr = R"({
  "data": {"train_glob": "train_*.bin", "val_glob": "val_*.bin"},
  "optimizers": [
    {"type": "adamw", "params": ["embed.weight", "proj.*", "*.bias", "*gains"], "lr": 0.01},
    {"type": "muon", "params": ["blocks.*.weight"],
     "lr": 0.025,
     "lr": 0.05, "weight_decay": 0.05}
  ]
})";
}  // namespace

TEST(ConfigJson, DuplicateKeyNamesPathAndLines) {
  const std::string e = error_of([] { cfg::parse_json_text(kDuplicateLr, "x.json"); });
  EXPECT_NE(e.find("x.json:7: duplicate key optimizers[1].lr (first at line 6)"), std::string::npos) << e;
  // Negative control: the same key in two different objects is fine.
  EXPECT_EQ(error_of([] { cfg::parse_json_text(minimal().dump(2), "x.json"); }), "");
}

TEST(ConfigJson, DuplicateKeysEverywhereAreAllReported) {
  // Escaped keys compare unescaped; quotes, braces and commas inside strings are not
  // structure; a repeated top-level key has its bare name as path.
  const std::string text =
      "{\"a\\\"}\": 1, \"b\": \"{\\\"a\\\": [1, 2]}\",\n"
      " \"m\": {\"x\": [{\"k\": 1}, {\"k\": 2, \"\\u006b\": 3}]},\n"
      " \"a\\\"}\": 2}";
  const std::vector<speedrun::DuplicateKey> d = speedrun::find_duplicate_keys(text);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].path, "m.x[1].k");
  EXPECT_EQ(d[0].line, 2u);
  EXPECT_EQ(d[0].first_line, 2u);
  EXPECT_EQ(d[1].path, "a\"}");
  EXPECT_EQ(d[1].line, 3u);
  EXPECT_EQ(d[1].first_line, 1u);
  const std::string e = error_of([&] { cfg::parse_json_text(text, "y.json"); });
  EXPECT_NE(e.find("y.json:2: duplicate key m.x[1].k (first at line 2)\ny.json:3: duplicate key a\"} (first at line 1)"),
            std::string::npos)
      << e;
  EXPECT_TRUE(speedrun::find_duplicate_keys(R"({"k": {"k": {"k": 1}}, "j": [{"k": 1}, {"k": 2}]})").empty());
}

TEST(ConfigFile, DuplicateKeyIsRefusedEvenWhenOverridden) {
  namespace fs = std::filesystem;
  const fs::path file = fs::temp_directory_path() / ("speedrun-dup-" + std::to_string(::getpid()) + ".json");
  std::ofstream(file) << kDuplicateLr;
  for (const std::vector<cfg::Override>& overrides :
       {std::vector<cfg::Override>{}, std::vector<cfg::Override>{{"optimizers[1].lr", "0.02"}}}) {
    const std::string e = error_of([&] { cfg::load_run_config(file, overrides); });
    EXPECT_NE(e.find(file.string() + ":7: duplicate key optimizers[1].lr (first at line 6)"), std::string::npos) << e;
  }
  fs::remove(file);
}

TEST(ConfigParse, IntegersWrittenAsExactFloatsOnly) {
  auto steps = [](const json& v) {
    json j = minimal();
    j["train"]["steps"] = v;
    return j;
  };
  EXPECT_EQ(cfg::run_config_from_json(steps(json::parse("1e3")), "x").train.steps, 1000);
  EXPECT_EQ(cfg::run_config_from_json(steps(json::parse("3.0")), "x").train.steps, 3);
  EXPECT_EQ(cfg::run_config_from_json(steps(json::parse("9007199254740992")), "x").train.steps, 9007199254740992);
  for (const char* bad : {"2.5", "1e-3", "1e16", "9007199254740993"}) {
    const std::string e = parse_error(steps(json::parse(bad)));
    EXPECT_NE(e.find("train.steps: expected an integer in [1, 9.007199255e+15]"), std::string::npos) << bad << ": " << e;
  }
  // Beyond int64: nlohmann parses 2^63 as unsigned; it used to wrap to -2^63.
  auto seed = [](const char* v) {
    json j = minimal();
    j["train"]["seed"] = json::parse(v);
    return j;
  };
  EXPECT_EQ(cfg::run_config_from_json(seed("9223372036854775807"), "x").train.seed, INT64_MAX);
  for (const char* bad : {"9223372036854775808", "18446744073709551615", "1e300"}) {
    const std::string e = parse_error(seed(bad));
    EXPECT_NE(e.find("train.seed: expected an integer >= 0, got"), std::string::npos) << bad << ": " << e;
  }
}

TEST(ConfigParse, FloatsThatVanishOrOverflowInFp32AreRefused) {
  struct Case {
    const char* path;  // JSON pointer
    double value;
    const char* message;  // expected fragment; "" = accepted
  };
  const std::vector<Case> cases = {
      {"/optimizers/1/lr", 1e-50, "optimizers[1].lr: expected a number > 0 and a normal fp32 number (1.175494351e-38 "
                                  "to 3.402823466e+38), got 1e-50"},
      {"/optimizers/1/lr", 1e-39, "optimizers[1].lr: expected a number > 0 and a normal fp32 number"},  // subnormal
      {"/optimizers/1/lr", 1e39, "optimizers[1].lr: expected a number > 0 and a normal fp32 number"},   // inf
      {"/optimizers/1/lr", 2e-38, ""},
      {"/optimizers/0/eps", 1e-60, "optimizers[0].eps: expected a number > 0 and a normal fp32 number"},
      {"/optimizers/0/eps", 1e-30, ""},
      {"/model/rmsnorm_eps", 1e-50, "model.rmsnorm_eps: expected a number > 0 and a normal fp32 number "
                                    "(1.175494351e-38 to 3.402823466e+38), got 1e-50"},
      {"/model/rmsnorm_eps", 0x1p-23, ""},  // 2^-23, upstream's fp32 eps, must stay valid
      {"/model/rmsnorm_eps", 0x1p-7, ""},
      {"/model/attn_scale", 1e40, "model.attn_scale: expected a number > 0 and a normal fp32 number"},
      {"/model/logit_cap", 0, "model.logit_cap: expected a number in [1.084202172e-19, 9.223372037e+18], got 0"},
      {"/model/logit_cap", 1e-19, "model.logit_cap: expected a number in [1.084202172e-19"},  // cap^2 underflows
      {"/model/logit_cap", 2e-19, ""},
      {"/model/sigmoid_temperature", 1e-45, "model.sigmoid_temperature: expected a number > 0 and a normal fp32"},
      {"/optimizers/1/momentum", 0.99999999, "optimizers[1].momentum: expected a number in [0, 0.9999999702): "
                                             "below 1 - 2^-25, which fp32 rounds to 1, got 0.99999999"},
      {"/optimizers/1/momentum", 1.0, "optimizers[1].momentum: expected a number in [0, 0.9999999702)"},
      {"/optimizers/1/momentum", 0.9999999, ""},  // fp32 0.99999988
      {"/optimizers/1/momentum_warmup_start", 0.99999999, "optimizers[1].momentum_warmup_start: expected a number in "
                                                          "[0, 0.9999999702)"},
      // lr 0.025: lr * wd >= 1 zeros or flips the parameters; below 2^-25 fp32 rounds the factor to 1.
      {"/optimizers/1/weight_decay", 40.0, "optimizers[1].weight_decay: lr * weight_decay = 1 must be below 1"},
      {"/optimizers/1/weight_decay", 1e-7, "optimizers[1].weight_decay: lr * weight_decay = 2.5e-09 vanishes in fp32"},
      {"/optimizers/1/weight_decay", 2e-6, ""},  // 5e-8: the factor is 1 - 2^-24 in fp32
      {"/optimizers/1/weight_decay", 0.0, ""},
  };
  for (const Case& c : cases) {
    json j = minimal();
    if (std::string(c.path) == "/optimizers/1/momentum_warmup_start") j["optimizers"][1]["momentum_warmup_steps"] = 10;
    if (std::string(c.path) == "/optimizers/1/lr") j["optimizers"][1]["weight_decay"] = 0.0;  // lr alone
    j[json::json_pointer(c.path)] = c.value;
    const std::string e = parse_error(j);
    if (std::string(c.message).empty()) EXPECT_EQ(e, "") << c.path << " = " << c.value;
    else EXPECT_NE(e.find(c.message), std::string::npos) << c.path << " = " << c.value << ": " << e;
  }
  // betas: a beta that fp32 rounds to 1 never lets a gradient into its moment.
  json j = minimal();
  j["optimizers"][0]["betas"] = {0.9, 0.99999999};
  EXPECT_NE(parse_error(j).find("optimizers[0].betas: expected a list of numbers of exactly 2, each in [0, 0.9999999702)"),
            std::string::npos)
      << parse_error(j);
  j["optimizers"][0]["betas"] = {0.9, 0.9999999};
  EXPECT_EQ(parse_error(j), "");
}

TEST(ConfigParse, SettingsThatCannotMeanWhatTheySay) {
  // More tokens per micro-batch than BLAS's int dimensions: 2^21 x 1024 = 2^31.
  json j = minimal();
  j["train"]["micro_batch_seqs"] = 1 << 21;
  j["train"]["batch_tokens"] = 2147483645;
  std::string e = parse_error(j);
  EXPECT_NE(e.find("train.micro_batch_seqs: train.micro_batch_seqs * model.seq_len = 2147483648 tokens per "
                   "micro-batch exceeds 2^31 - 1"),
            std::string::npos)
      << e;
  // A batch no shard can hold (shards count tokens in an int32).
  j = minimal();
  j["train"]["batch_tokens"] = 2147483646;
  EXPECT_NE(parse_error(j).find("train.batch_tokens: expected an integer in [1, 2147483645], got 2147483646"),
            std::string::npos)
      << parse_error(j);
  // Newton-Muon's mlp.proj blocks must divide the MLP width 4 x 768 = 3072.
  j = minimal();
  j["optimizers"][1]["type"] = "newton_muon";
  j["optimizers"][1]["mlp_proj_blocks"] = 5;
  EXPECT_NE(parse_error(j).find("optimizers[1].mlp_proj_blocks: must divide the MLP width model.mlp_ratio * "
                                "model.d_model = 3072, got 5"),
            std::string::npos)
      << parse_error(j);
  j["optimizers"][1]["mlp_proj_blocks"] = 6;
  EXPECT_EQ(parse_error(j), "");
  // A rate fp32 turns into 0.
  j["optimizers"][1]["ema_beta"] = 1e-50;
  EXPECT_NE(parse_error(j).find("optimizers[1].ema_beta: expected a number 0, or in [1.175494351e-38, 1]"),
            std::string::npos)
      << parse_error(j);
  j["optimizers"][1]["ema_beta"] = 0;
  EXPECT_EQ(parse_error(j), "");
  // Values fp32 cannot hold in the Newton-Schulz coefficients.
  j = minimal();
  j["optimizers"][1]["ns_coefficients"] = {2.0, -1.5, 1e39};
  EXPECT_NE(parse_error(j).find("optimizers[1].ns_coefficients: expected a list of numbers of exactly 3, each finite "
                                "in fp32"),
            std::string::npos)
      << parse_error(j);
}

TEST(ConfigOverride, SameChecksThroughSet) {
  auto after = [](const std::string& key, const std::string& value) {
    json j = minimal();
    return error_of([&] {
      cfg::apply_overrides(j, {{key, value}});
      cfg::run_config_from_json(j, "x.json");
    });
  };
  EXPECT_NE(after("optimizers[1].lr", "1e-50").find("optimizers[1].lr: expected a number > 0 and a normal fp32 "
                                                    "number (1.175494351e-38 to 3.402823466e+38), got 1e-50"),
            std::string::npos)
      << after("optimizers[1].lr", "1e-50");
  EXPECT_NE(after("optimizers[1].lr", "1e-400").find("--set optimizers[1].lr=1e-400: expected a number > 0"),
            std::string::npos)
      << after("optimizers[1].lr", "1e-400");  // beyond double: strtod reports the underflow
  EXPECT_NE(after("optimizers[1].lr", "1e-39").find("optimizers[1].lr: expected a number > 0 and a normal fp32"),
            std::string::npos);
  EXPECT_NE(after("optimizers[1].lr", "nan").find("optimizers[1].lr: expected a number > 0"), std::string::npos)
      << after("optimizers[1].lr", "nan");
  EXPECT_NE(after("optimizers[1].weight_decay", "40").find("lr * weight_decay = 1 must be below 1"), std::string::npos);
  EXPECT_NE(after("model.rmsnorm_eps", "1e-40").find("model.rmsnorm_eps: expected a number > 0 and a normal fp32"),
            std::string::npos);
  EXPECT_EQ(after("model.rmsnorm_eps", "1.1920928955078125e-07"), "");
  EXPECT_EQ(after("train.steps", "1e3"), "");
  EXPECT_NE(after("train.steps", "2.5").find("train.steps: expected an integer in [1, 9.007199255e+15], got 2.5"),
            std::string::npos)
      << after("train.steps", "2.5");
  EXPECT_NE(after("train.seed", "9223372036854775808").find("--set train.seed=9223372036854775808: expected an "
                                                             "integer >= 0 (9223372036854775808 is beyond the 64-bit"),
            std::string::npos)
      << after("train.seed", "9223372036854775808");
}

TEST(ConfigOverride, SameKeyTwiceIsRefused) {
  json j = minimal();
  const std::string e = error_of([&] {
    cfg::apply_overrides(j, {{"optimizers[1].lr", "0.02"}, {"train.steps", "5"}, {"optimizers.[1].lr", "0.5"}});
  });
  EXPECT_NE(e.find("--set optimizers.[1].lr=0.5: optimizers[1].lr is already set by --set optimizers[1].lr=0.02; "
                   "give each key once"),
            std::string::npos)
      << e;
  // Negative control: the same key name in different entries is two keys.
  json k = minimal();
  EXPECT_EQ(error_of([&] { cfg::apply_overrides(k, {{"optimizers[0].lr", "0.02"}, {"optimizers[1].lr", "0.5"}}); }),
            "");
}

TEST(ConfigFile, ValueLinesNameEachKeyAndListElement) {
  const std::string text =
      "{\n"
      " \"train\": {\n"
      "   \"steps\": 3, \"seed\": 1},\n"
      " \"optimizers\": [\n"
      "  {\"lr\": 1},\n"
      "  {\"type\": \"muon\",\n"
      "   \"lr\": 2}]\n"
      "}";
  const std::map<std::string, size_t> lines = speedrun::value_lines(text);
  EXPECT_EQ(lines.at("train"), 2u);
  EXPECT_EQ(lines.at("train.steps"), 3u);
  EXPECT_EQ(lines.at("train.seed"), 3u);
  EXPECT_EQ(lines.at("optimizers"), 4u);
  EXPECT_EQ(lines.at("optimizers[0]"), 5u);
  EXPECT_EQ(lines.at("optimizers[0].lr"), 5u);
  EXPECT_EQ(lines.at("optimizers[1]"), 6u);
  EXPECT_EQ(lines.at("optimizers[1].lr"), 7u);
  EXPECT_EQ(lines.count("optimizers[2]"), 0u);
}

// Every problem with a key names the file, the key and its line (issue 19's trial: only
// duplicate keys had a line); a key that is missing, the line of the object it belongs
// in; a value given with --set, the --set and no line of the file.
TEST(ConfigFile, ErrorsAboutKeysNameTheirLine) {
  namespace fs = std::filesystem;
  const fs::path file = fs::temp_directory_path() / ("speedrun-lines-" + std::to_string(::getpid()) + ".json");
  std::ofstream(file) << "{\n"
                         "  \"model\": {\"n_layer\": 0},\n"
                         "  \"data\": {\"train_glob\": \"a\", \"val_glob\": \"b\"},\n"
                         "  \"train\": {\n"
                         "    \"stpes\": 3\n"
                         "  },\n"
                         "  \"optimizers\": [\n"
                         "    {\"type\": \"adamw\", \"params\": [\"*\"], \"lr\": -1},\n"
                         "    {\"type\": \"muon\", \"params\": [\"x\"]}\n"
                         "  ]\n"
                         "}\n";
  const std::string f = file.string();
  std::string e = error_of([&] { cfg::load_run_config(file); });
  EXPECT_NE(e.find("\n  " + f + ":2: model.n_layer: expected an integer in [1, 1024], got 0"), std::string::npos) << e;
  EXPECT_NE(e.find("\n  " + f + ":5: train.stpes: unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("\n  " + f + ":8: optimizers[0].lr: expected a number > 0"), std::string::npos) << e;
  EXPECT_NE(e.find("\n  " + f + ":9: optimizers[1].lr: required key is missing"), std::string::npos) << e;
  // The same key through --set: named with the --set, without the file's line.
  e = error_of([&] { cfg::load_run_config(file, {{"model.n_layer", "-2"}}); });
  EXPECT_NE(e.find("\n  model.n_layer: expected an integer in [1, 1024], got -2 (from --set model.n_layer=-2)"),
            std::string::npos)
      << e;
  EXPECT_EQ(e.find(f + ":2:"), std::string::npos) << e;
  // A cross-field problem about a key the file does not hold: the line of its section.
  std::ofstream(file) << "{\"data\": {\"train_glob\": \"a\", \"val_glob\": \"b\", \"val_tokens\": 100},\n"
                         " \"model\": {\"seq_len\": 64},\n"
                         " \"train\": {\"micro_batch_seqs\": 3},\n"
                         " \"optimizers\": [{\"type\": \"adamw\", \"params\": [\"*\"], \"lr\": 0.1}]}\n";
  e = error_of([&] { cfg::load_run_config(file); });
  EXPECT_NE(e.find("\n  " + f + ":1: data.val_tokens: must be a multiple of model.seq_len = 64"), std::string::npos)
      << e;
  EXPECT_NE(e.find("\n  " + f + ":3: train.batch_tokens: must be a multiple of"), std::string::npos) << e;
  fs::remove(file);
}
