// model.fp8_head on record26 (model/record26.h, model/head.h): the training head runs through
// the FP8 emulation (ops.h fp8_head_forward/backward), evaluation keeps the plain head, the
// chunked head equals one pass, and the config refuses the key elsewhere. The values
// themselves are compared with the float64 PyTorch reference's emulation of upstream's
// nanogpt::mm in tests/python/test_reference_record26.py (TestRecord26Fp8HeadAgainstTorch).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "model/device_support.h"
#include "model/head.h"
#include "model/record26.h"
#include "model/registry.h"
#include "ops/ops.h"
#include "record26_test_config.h"
#include "test_support.h"

namespace speedrun::test {
namespace {

config::ModelConfig tiny(bool fp8) {
  config::ModelConfig m = record26_test_config("LSSLSL", 32, 16, 32, 8);
  m.fp8_head = fp8;
  return m;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / den);
}

std::vector<float> copy_of(const Tensor& t) { return std::vector<float>(t.data<float>(), t.data<float>() + t.numel()); }

// Two models with the same parameters (noise on the init, so that the zero head has values),
// one with model.fp8_head.
struct Pair {
  model::Record26 plain, fp8;
  Pair() : plain(tiny(false), Device::cpu, 2), fp8(tiny(true), Device::cpu, 2) {
    plain.init_parameters(5);
    std::mt19937_64 rng(test_seed());
    std::normal_distribution<double> noise(0.0, 0.05);
    for (size_t i = 0; i < plain.layout().params().size(); ++i) {
      float* p = plain.param(i).data<float>();
      for (int64_t k = 0; k < plain.param(i).numel(); ++k) p[k] += static_cast<float>(noise(rng));
      std::copy(p, p + plain.param(i).numel(), fp8.param(i).data<float>());
    }
  }
};

TEST(Record26Fp8Head, TrainingTakesTheFp8ProductEvaluationThePlainHead) {
  Pair m;
  const int64_t B = 2, T = m.plain.config().seq_len;
  std::mt19937_64 rng(test_seed());
  std::uniform_int_distribution<int32_t> tok(0, 96);
  std::vector<int32_t> x(B * T), y(B * T);
  for (auto& t : x) t = tok(rng);
  for (auto& t : y) t = tok(rng);
  const model::RunPosition at{3, 10};
  // Evaluation: bitwise the plain head (upstream's CastedLinear outside self.training).
  EXPECT_EQ(m.fp8.forward_loss(x.data(), y.data(), B, at), m.plain.forward_loss(x.data(), y.data(), B, at));
  std::vector<float> la(B * T * 128), lb(B * T * 128);
  m.fp8.forward_logits(x.data(), B, la.data(), at);
  m.plain.forward_logits(x.data(), B, lb.data(), at);
  EXPECT_EQ(la, lb);
  // Training: the FP8 product, close to the plain one but not equal (e4m3 keeps 4 significant
  // bits, e5m2 3: the head gradient moves by percents, the loss by far less).
  const double lp = m.plain.forward_backward(x.data(), y.data(), B, nullptr, at);
  const double lf = m.fp8.forward_backward(x.data(), y.data(), B, nullptr, at);
  EXPECT_NE(lp, lf);
  EXPECT_NEAR(lf / lp, 1.0, 1e-2);
  const std::vector<float> gp = copy_of(m.plain.grad("lm_head.weight")), gf = copy_of(m.fp8.grad("lm_head.weight"));
  const double head = rel_err(gf, gp);
  EXPECT_GT(head, 1e-3) << "negative control: FP8 rounding shows in the head gradient";
  EXPECT_LT(head, 0.3);
  const double embed = rel_err(copy_of(m.fp8.grad("embed.weight")), copy_of(m.plain.grad("embed.weight")));
  EXPECT_GT(embed, 1e-4) << "the trunk sees the FP8 head's bf16 dx";
  EXPECT_LT(embed, 0.3);
  // The extra buffers (xq, wq) are planned as they are taken.
  EXPECT_EQ(m.fp8.activation_bytes(), model::plan_activation_bytes(tiny(true), Device::cpu, 2, DType::f32));
  EXPECT_EQ(m.fp8.activation_bytes(), m.plain.activation_bytes() + (B * T + 128) * 32 * sizeof(float));
}

// model::head_loss in chunks (the weight rounded with the first chunk only, later chunks
// reading wq) equals one pass over all rows: the same roundings, row by row.
TEST(Record26Fp8Head, ChunkedHeadEqualsOnePass) {
  const int64_t N = 48, d = 32, V = 80;
  std::mt19937_64 rng(test_seed());
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> hf(N * d), w(V * d);
  for (auto& v : hf) v = nd(rng);
  for (auto& v : w) v = 0.03f * nd(rng);
  std::vector<int32_t> targets(N);
  std::uniform_int_distribution<int32_t> tok(0, V - 1);
  for (auto& t : targets) t = tok(rng);
  config::ModelConfig cfg = tiny(true);
  cfg.d_model = d;
  const SoftCap cap = model::softcap_of(cfg);
  struct Out {
    double loss;
    std::vector<float> dhf, dw;
  };
  auto run = [&](int64_t chunk) {
    std::vector<float> logits(chunk * V), dhf(N * d), dw(V * d, 0.0f), losses(N), xq(N * d), wq(V * d);
    model::Fp8HeadTensors f{model::fp8_head_scales(cfg), Tensor::of(xq.data(), {N, d}), Tensor::of(wq.data(), {V, d}),
                            {}};
    const double loss =
        model::head_loss({Tensor::of(hf.data(), {N, d}), Tensor::of(w.data(), {V, d}), Tensor{},
                          Tensor::of(dw.data(), {V, d}), Tensor{}, Tensor::of(dhf.data(), {N, d}),
                          Tensor::of(targets.data(), {N}), Tensor::of(logits.data(), {chunk, V}), Tensor{},
                          Tensor::of(losses.data(), {N})},
                         cap, true, &f);
    return Out{loss, dhf, dw};
  };
  const Out one = run(N), chunked = run(7);  // 7 rows a chunk: the last chunk is partial
  EXPECT_NEAR(chunked.loss, one.loss, 1e-9 * std::fabs(one.loss));
  EXPECT_EQ(chunked.dhf, one.dhf);  // bf16 values of per-row sums over V: the same
  EXPECT_LT(rel_err(chunked.dw, one.dw), 1e-6);  // sums over rows, in another order
  // The scales are upstream's: x_s = sqrt(d)/448, w_s = 24/448, grad_s = 1/448.
  const ops::Fp8HeadScales s = model::fp8_head_scales(cfg);
  EXPECT_DOUBLE_EQ(s.x_s, std::sqrt(32.0) / 448);
  EXPECT_DOUBLE_EQ(s.w_s, 24.0 / 448);
  EXPECT_DOUBLE_EQ(s.grad_s, 1.0 / 448);
  EXPECT_TRUE(s.saturate);
}

TEST(Record26Fp8Head, ConfigRefusesItOutsideRecord26) {
  const std::string track3 = R"({"model": {"fp8_head": true},
    "data": {"train_glob": "x", "val_glob": "y", "val_tokens": 1024},
    "optimizers": [{"type": "adamw", "params": ["*"], "lr": 0.01}]})";
  const std::string msg = error_of([&] { config::run_config_from_json(config::parse_json_text(track3, "t.json"), "t.json"); });
  EXPECT_NE(msg.find("model.fp8_head"), std::string::npos) << msg;
  const std::string bad = R"({"model": {"arch": "record26", "n_layer": 12, "fp8_head": "yes"},
    "data": {"train_glob": "x", "val_glob": "y", "val_tokens": 1024},
    "optimizers": [{"type": "adamw", "params": ["*"], "lr": 0.01}]})";
  const std::string msg2 = error_of([&] { config::run_config_from_json(config::parse_json_text(bad, "t.json"), "t.json"); });
  EXPECT_NE(msg2.find("model.fp8_head"), std::string::npos) << msg2;
  const std::string ok = R"({"model": {"arch": "record26", "n_layer": 12, "fp8_head": true},
    "data": {"train_glob": "x", "val_glob": "y", "val_tokens": 1024},
    "optimizers": [{"type": "adamw", "params": ["*"], "lr": 0.01}]})";
  EXPECT_TRUE(config::run_config_from_json(config::parse_json_text(ok, "t.json"), "t.json").model.fp8_head);
}

// On CUDA the FP8 products need dimensions that are multiples of 16: refused before a run,
// naming the key (the CPU emulation takes any shape).
TEST(Record26Fp8Head, CudaShapeRuleNamesTheKey) {
  config::ModelConfig m;  // upstream's shapes: 768, 50304, 1024 (49152 in configs/record26.json)
  m.arch = "record26";
  m.fp8_head = true;
  EXPECT_NO_THROW(model::check_model_runs_on(m, Device::cuda));
  for (auto [key, field] : {std::pair<const char*, int64_t config::ModelConfig::*>{"model.d_model", &config::ModelConfig::d_model},
                            {"model.padded_vocab_size", &config::ModelConfig::padded_vocab_size},
                            {"model.seq_len", &config::ModelConfig::seq_len}}) {
    config::ModelConfig bad = m;
    bad.*field += 8;
    const std::string msg = error_of([&] { model::check_model_runs_on(bad, Device::cuda); });
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.fp8_head"), std::string::npos) << msg;
    EXPECT_NO_THROW(model::check_model_runs_on(bad, Device::cpu));
    bad.fp8_head = false;
    EXPECT_NO_THROW(model::check_model_runs_on(bad, Device::cuda));
  }
}

}  // namespace
}  // namespace speedrun::test

namespace speedrun::test {
namespace {

size_t aligned(int64_t bytes) { return static_cast<size_t>((bytes + 63) / 64 * 64); }  // core/buffer.h Arena

// The CUDA model carries the FP8 head (model/record26.cpp): the memory plan, which counts
// without a device, is the plain head's plus the one-byte buffers of model/head.h's
// Fp8HeadTensors (xq, wq, and for one chunk of logits rows xqt, wqt, g, gt), the chunk's row
// count rounded down to a multiple of 16 for cuBLASLt's FP8 products. The CPU plan keeps its
// f32 xq and wq. (That the model allocates what the plan says: CudaModel.Record26Fp8Allocates*.)
TEST(Record26Fp8Head, CudaPlanCountsTheFp8Buffers) {
  // Small: every row in one chunk (256 MiB of f32 logits is far more than N rows).
  const config::ModelConfig plain = tiny(false), fp8 = tiny(true);
  const int64_t B = 2, N = B * plain.seq_len, d = plain.d_model, V = plain.padded_vocab_size;
  EXPECT_NO_THROW(model::check_arch_supported(fp8, Device::cuda));
  for (DType act : {DType::f32, DType::bf16}) {
    const size_t base = model::plan_activation_bytes(plain, Device::cuda, B, act);
    EXPECT_EQ(model::plan_activation_bytes(fp8, Device::cuda, B, act),
              base + aligned(N * d) + 2 * aligned(V * d) + aligned(d * N) + 2 * aligned(N * V))
        << dtype_name(act);
  }
  EXPECT_EQ(model::plan_activation_bytes(fp8, Device::cpu, B, DType::f32),
            model::plan_activation_bytes(plain, Device::cpu, B, DType::f32) + aligned(4 * N * d) + aligned(4 * V * d));

  // Upstream's shapes (configs/record26.json): 256 MiB / (50304 x 4 bytes) = 1334 rows, not a
  // multiple of 16: the FP8 chunk is 1328 rows (the plain head keeps 1334).
  config::ModelConfig big = fp8;
  big.n_layer = 12;
  big.window_pattern = "LSSSLSSLSSSL";
  big.d_model = 768;
  big.n_head = 6;
  big.head_dim = 128;
  big.vocab_size = 50257;
  big.padded_vocab_size = 50304;
  big.doc_separator = 50256;
  big.seq_len = 49152;
  big.window_tokens = 1792;
  big.attn_block_size = 128;
  config::ModelConfig big_plain = big;
  big_plain.fp8_head = false;
  const int64_t Nb = big.seq_len, db = big.d_model, Vb = big.padded_vocab_size, plain_rows = 1334, rows = 1328;
  ASSERT_EQ((int64_t{256} << 20) / (Vb * 4), plain_rows);
  const size_t fp8_bytes = aligned(Nb * db) + 2 * aligned(Vb * db) + aligned(db * rows) + 2 * aligned(rows * Vb);
  EXPECT_EQ(model::plan_activation_bytes(big, Device::cuda, 1, DType::bf16),
            model::plan_activation_bytes(big_plain, Device::cuda, 1, DType::bf16) + fp8_bytes +
                aligned(4 * rows * Vb) + aligned(2 * rows * Vb) - aligned(4 * plain_rows * Vb) -
                aligned(2 * plain_rows * Vb));
}

}  // namespace
}  // namespace speedrun::test
