// model/model_file.h: a checkpoint's parameters and config written and read back
// bitwise, other tensors and metadata ignored, the newest checkpoint of a run directory,
// and every way a checkpoint can be wrong for a model, each a UserError naming the file
// and what is wrong.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "model/gpt.h"
#include "model/model_file.h"
#include "test_support.h"

namespace speedrun {
namespace {

namespace fs = std::filesystem;

config::RunConfig tiny_config(int64_t n_layer = 2) {
  const config::json raw = {
      {"name", "tiny"},
      {"model",
       {{"n_layer", n_layer}, {"d_model", 32}, {"n_head", 2}, {"head_dim", 16}, {"seq_len", 16}, {"vocab_size", 300},
        {"padded_vocab_size", 320}}},
      {"data", {{"train_glob", "/nowhere/t_*.bin"}, {"val_glob", "/nowhere/v_*.bin"}, {"val_tokens", 64}}},
      {"train", {{"batch_tokens", 64}, {"micro_batch_seqs", 2}, {"steps", 6}}},
      {"optimizers", {{{"type", "adamw"}, {"params", {"*"}}, {"lr", 0.01}}}}};
  return config::run_config_from_json(raw, "test config");
}

class ModelFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "speedrun-mf-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::vector<float> random_params(const model::ParamLayout& layout) {
    std::vector<float> p(static_cast<size_t>(layout.total_numel()));
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& x : p) x = n(rng_);
    return p;
  }
  // The UserError message of `fn` (fails the test when it does not throw one).
  template <class Fn>
  std::string error_of(Fn&& fn) {
    try {
      fn();
    } catch (const UserError& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected a UserError";
    return "";
  }
  std::string load_error(const fs::path& p, const config::RunConfig& cfg) {
    return error_of([&] {
      const SafetensorsFile f = SafetensorsFile::open(p);
      model::Gpt g(cfg.model, Device::cpu, 1);
      model::load_parameters(f, g);
    });
  }
  fs::path dir_;
  std::mt19937 rng_{static_cast<std::mt19937::result_type>(test::process_seed("ModelFile"))};
};

TEST_F(ModelFileTest, RoundTripIsBitwiseAndIgnoresOtherTensors) {
  const config::RunConfig cfg = tiny_config();
  const model::ParamLayout layout(cfg.model);
  const std::vector<float> params = random_params(layout);
  std::vector<float> moment(100);
  for (float& x : moment) x = static_cast<float>(rng_());
  std::vector<SafetensorsTensor> tensors = model::parameter_tensors(layout, params.data());
  tensors.insert(tensors.begin(), SafetensorsTensor{"optimizers.0.exp_avg", "F32", {100}, moment.data(), 400});
  auto meta = model::checkpoint_metadata(cfg, 60);
  meta["speedrun.loader"] = "{\"shard\": 1}";  // another key: ignored
  const fs::path path = dir_ / model::checkpoint_file_name(60);
  write_safetensors(path, tensors, meta);
  EXPECT_EQ(path.filename(), "step_000060.safetensors");

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(model::step_of(f), 60);
  EXPECT_EQ(config::to_json(model::config_of(f)).dump(), config::to_json(cfg).dump());
  model::Gpt g(cfg.model, Device::cpu, 1);
  model::load_parameters(f, g);
  for (const model::ParamSpec& s : layout.params())
    ASSERT_EQ(0, std::memcmp(g.param(s.name).ptr, params.data() + s.offset, s.numel * sizeof(float))) << s.name;
  // write_model_checkpoint writes the same parameters and metadata.
  model::write_model_checkpoint(dir_ / "plain.safetensors", cfg, layout, params.data(), 7);
  const SafetensorsFile plain = SafetensorsFile::open(dir_ / "plain.safetensors");
  EXPECT_EQ(model::step_of(plain), 7);
  EXPECT_EQ(plain.metadata_at("speedrun.format"), "speedrun-checkpoint/1");
  EXPECT_EQ(plain.names().size(), layout.params().size());
}

TEST_F(ModelFileTest, FindsTheNewestCheckpoint) {
  const config::RunConfig cfg = tiny_config();
  const model::ParamLayout layout(cfg.model);
  const std::vector<float> params = random_params(layout);
  const fs::path run = dir_ / "run", ckpt = run / "checkpoints";
  fs::create_directories(ckpt);
  EXPECT_NE(error_of([&] { model::find_checkpoint(run); }).find("holds no checkpoint"), std::string::npos);
  for (int64_t step : {5, 60, 1000000, 999})
    model::write_model_checkpoint(ckpt / model::checkpoint_file_name(step), cfg, layout, params.data(), step);
  EXPECT_EQ(model::checkpoint_file_name(1000000), "step_1000000.safetensors");
  // Not checkpoints: a temporary a killed writer left, other names.
  std::ofstream(ckpt / ".step_2000000.safetensors.tmp-12-0") << "partial";
  std::ofstream(ckpt / "step_3000000.safetensors.bak") << "x";
  std::ofstream(ckpt / "step_x.safetensors") << "x";
  EXPECT_EQ(model::find_checkpoint(run), ckpt / "step_1000000.safetensors");
  EXPECT_EQ(model::find_checkpoint(ckpt), ckpt / "step_1000000.safetensors");
  EXPECT_EQ(model::find_checkpoint(ckpt / "step_000005.safetensors"), ckpt / "step_000005.safetensors");
  const std::string missing = error_of([&] { model::find_checkpoint(dir_ / "nope"); });
  EXPECT_NE(missing.find((dir_ / "nope").string()), std::string::npos) << missing;
  EXPECT_NE(missing.find("does not exist"), std::string::npos) << missing;
  fs::create_directories(dir_ / "empty");
  const std::string empty = error_of([&] { model::find_checkpoint(dir_ / "empty"); });
  EXPECT_NE(empty.find("no checkpoints/ directory"), std::string::npos) << empty;
}

TEST_F(ModelFileTest, RejectsACheckpointThatDoesNotFitTheModel) {
  const config::RunConfig cfg = tiny_config(), deeper = tiny_config(3);
  const model::ParamLayout layout(cfg.model);
  const std::vector<float> params = random_params(layout);
  const fs::path path = dir_ / "c.safetensors";
  model::write_model_checkpoint(path, cfg, layout, params.data(), 1);

  // A model with a layer more: the missing parameters are named.
  std::string e = load_error(path, deeper);
  EXPECT_NE(e.find(path.string()), std::string::npos) << e;
  EXPECT_NE(e.find("14 of the model's 47 parameters are missing: blocks.2.attn.q.weight"), std::string::npos) << e;

  // A parameter of another shape, or dtype.
  std::vector<SafetensorsTensor> t = model::parameter_tensors(layout, params.data());
  for (auto& x : t)
    if (x.name == "blocks.1.mlp.fc.weight") x.shape = {32, 128};
  write_safetensors(dir_ / "shape.safetensors", t, model::checkpoint_metadata(cfg, 1));
  e = load_error(dir_ / "shape.safetensors", cfg);
  EXPECT_NE(e.find("shape.safetensors: tensor blocks.1.mlp.fc.weight is F32 [32, 128], expected F32 [128, 32]"),
            std::string::npos)
      << e;
  t = model::parameter_tensors(layout, params.data());
  std::vector<double> wide(32);
  for (auto& x : t)
    if (x.name == "norm2.gains") x = SafetensorsTensor{"norm2.gains", "F64", {32}, wide.data(), 256};
  write_safetensors(dir_ / "dtype.safetensors", t, model::checkpoint_metadata(cfg, 1));
  e = load_error(dir_ / "dtype.safetensors", cfg);
  EXPECT_NE(e.find("tensor norm2.gains is F64 [32], expected F32 [32]"), std::string::npos) << e;
}

TEST_F(ModelFileTest, RejectsBadMetadata) {
  const config::RunConfig cfg = tiny_config();
  const model::ParamLayout layout(cfg.model);
  const std::vector<float> params = random_params(layout);
  const auto tensors = model::parameter_tensors(layout, params.data());
  auto with = [&](const std::string& name, std::map<std::string, std::string> meta) {
    write_safetensors(dir_ / name, tensors, meta);
    return SafetensorsFile::open(dir_ / name);
  };
  const auto good = model::checkpoint_metadata(cfg, 3);
  auto meta = good;
  meta.erase("speedrun.format");
  SafetensorsFile f = with("noformat.safetensors", meta);
  std::string e = error_of([&] { model::config_of(f); });
  EXPECT_NE(e.find("noformat.safetensors: not a speedrun checkpoint (no metadata entry speedrun.format)"),
            std::string::npos)
      << e;
  meta = good;
  meta["speedrun.format"] = "speedrun-checkpoint/9";
  f = with("format9.safetensors", meta);
  e = error_of([&] { model::config_of(f); });
  EXPECT_NE(e.find("format9.safetensors: metadata speedrun.format is 'speedrun-checkpoint/9'"), std::string::npos) << e;
  meta = good;
  meta.erase("speedrun.config");
  f = with("noconfig.safetensors", meta);
  e = error_of([&] { model::config_of(f); });
  EXPECT_NE(e.find("noconfig.safetensors: no metadata entry speedrun.config"), std::string::npos) << e;
  meta = good;
  meta["speedrun.config"] = "{\"model\": ";
  f = with("badjson.safetensors", meta);
  e = error_of([&] { model::config_of(f); });
  EXPECT_NE(e.find("badjson.safetensors (metadata speedrun.config)"), std::string::npos) << e;
  config::json bad = config::to_json(cfg);
  bad["model"]["n_layer"] = -2;
  meta = good;
  meta["speedrun.config"] = bad.dump();
  f = with("badvalue.safetensors", meta);
  e = error_of([&] { model::config_of(f); });
  EXPECT_NE(e.find("badvalue.safetensors (metadata speedrun.config)"), std::string::npos) << e;
  EXPECT_NE(e.find("model.n_layer"), std::string::npos) << e;
  for (const char* step : {"", "-1", "12x", "1e3"}) {
    meta = good;
    meta["speedrun.step"] = step;
    f = with("step.safetensors", meta);
    e = error_of([&] { model::step_of(f); });
    EXPECT_NE(e.find(std::string("metadata speedrun.step is '") + step + "'"), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace speedrun
