// Run-config parsing, validation, overrides and the resolved output.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "config/run_config.h"
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

// The message of the UserError thrown by `f`, or "" when none is thrown.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

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
  EXPECT_NE(parse_error(j).find("optimizers[1].lr: expected a number > 0, got -0.1"), std::string::npos)
      << parse_error(j);
}

TEST(ConfigParse, WrongTypeNamesPath) {
  json j = minimal();
  j["train"]["steps"] = "many";
  EXPECT_NE(parse_error(j).find("train.steps: expected an integer >= 1, got \"many\""), std::string::npos)
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
  EXPECT_NE(parse_error(j).find("optimizers[1].lr: expected a number > 0, got -1"), std::string::npos);
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
