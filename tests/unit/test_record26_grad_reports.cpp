// Record26's gradient reports (model/grad_ready_sink.h) and the trainer's gradient scaling
// (train/grad_scaling.h, model::gradient_scale): each parameter is reported once, when its
// gradient is final (it does not change after the report); the scaler multiplies each
// gradient before passing its report on. The multi-rank runs that use them are in
// tests/python/test_mpi_overlap.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "model/record26.h"
#include "model/registry.h"
#include "record26_test_config.h"
#include "test_support.h"
#include "train/grad_scaling.h"

namespace speedrun::test {
namespace {

std::vector<float> copy_of(model::Model& m, size_t index) {
  const Tensor g = m.grad(index);
  return {g.data<float>(), g.data<float>() + g.numel()};
}

// Snapshots each reported gradient, and (negative control) embed's gradient as it stood at
// the first report, before the trunk's backward had reached it.
struct Recorder final : model::GradReadySink {
  explicit Recorder(model::Model& m) : model(m) {}
  void gradient_final(size_t index) override {
    if (order.empty()) embed_at_first_report = copy_of(model, model.layout().index_of("embed.weight"));
    order.push_back(index);
    at_report[index] = copy_of(model, index);
  }
  model::Model& model;
  std::vector<size_t> order;
  std::map<size_t, std::vector<float>> at_report;
  std::vector<float> embed_at_first_report;
};

// Two micro-batches of fresh tokens with several documents; the parameters perturbed so that
// no gradient is zero by construction (zero c_proj and lm_head would zero others).
struct Draw {
  std::vector<int32_t> x, y;
};
Draw draw(const config::ModelConfig& m, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, 96);
  std::bernoulli_distribution sep(0.05);
  Draw d;
  for (int64_t i = 0; i < 2 * m.seq_len; ++i) {
    d.x.push_back(sep(rng) ? static_cast<int32_t>(m.doc_separator) : tok(rng));
    d.y.push_back(tok(rng));
  }
  return d;
}
void perturb(model::Model& model, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.05f);
  float* p = model.params();
  for (int64_t i = 0; i < model.layout().total_numel(); ++i) p[i] += n(rng);
}

TEST(Record26GradReports, EachParameterOnceWhenFinalInBackwardOrder) {
  const config::ModelConfig m = tiny_record26();
  model::Record26 model(m, Device::cpu, 1);
  const uint64_t seed = test_seed();
  SCOPED_TRACE("SPEEDRUN_TEST_SEED=" + std::to_string(seed));
  model.init_parameters(seed);
  perturb(model, seed + 1);
  const Draw d = draw(m, seed + 2);
  const model::RunPosition at{3, 10};
  model.forward_backward(d.x.data(), d.y.data(), 1, nullptr, at);
  Recorder rec(model);
  model.forward_backward(d.x.data() + m.seq_len, d.y.data() + m.seq_len, 1, nullptr, at, &rec);

  const model::ParamLayout& layout = model.layout();
  const size_t n = layout.params().size();
  ASSERT_EQ(rec.order.size(), n);
  std::vector<size_t> sorted = rec.order;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(sorted[i], i) << "reported " << (i < sorted.size() ? sorted[i] : 0);
  // Final: nothing changed after the report (bitwise), and every gradient is nonzero.
  for (const auto& [index, snapshot] : rec.at_report) {
    const std::vector<float> now = copy_of(model, index);
    EXPECT_EQ(snapshot, now) << layout.params()[index].name;
    EXPECT_TRUE(std::any_of(now.begin(), now.end(), [](float v) { return v != 0.0f; })) << layout.params()[index].name;
  }
  // Negative control: a gradient snapshotted before its final report differs from the final one.
  EXPECT_NE(rec.embed_at_first_report, copy_of(model, layout.index_of("embed.weight")));
  // The backward's order: the head first, embed last; value_embeds.j right after layer j's
  // attention; scalars after every block; layer 7 has no attention parameters.
  auto pos = [&](const std::string& name) {
    return std::find(rec.order.begin(), rec.order.end(), layout.index_of(name)) - rec.order.begin();
  };
  EXPECT_EQ(pos("lm_head.weight"), 0);
  EXPECT_EQ(pos("embed.weight"), static_cast<long>(n) - 1);
  EXPECT_EQ(pos("scalars"), static_cast<long>(n) - 2);
  for (int j = 0; j < 3; ++j) {
    const std::string b = "blocks." + std::to_string(j) + ".";
    EXPECT_EQ(pos("value_embeds." + std::to_string(j) + ".weight"), pos(b + "attn.qkv_w") + 1) << j;
  }
  for (int64_t l = 1; l < m.n_layer; ++l)
    EXPECT_LT(pos("blocks." + std::to_string(l) + ".mlp.c_fc.weight"),
              pos("blocks." + std::to_string(l - 1) + ".mlp.c_fc.weight"));
  EXPECT_THROW(layout.index_of("blocks.7.attn.qkv_w"), std::exception);
}

TEST(GradientScaler, ScalesEachGradientBeforeItsReportAndTheRestAtFinish) {
  const config::ModelConfig m = tiny_record26();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("SPEEDRUN_TEST_SEED=" + std::to_string(seed));
  const Draw d = draw(m, seed + 2);
  const model::RunPosition at{3, 10};
  auto make = [&] {
    auto model = std::make_unique<model::Record26>(m, Device::cpu, 1);
    model->init_parameters(seed);
    perturb(*model, seed + 1);
    return model;
  };
  auto plain = make();
  plain->forward_backward(d.x.data(), d.y.data(), 1, nullptr, at);
  plain->forward_backward(d.x.data() + m.seq_len, d.y.data() + m.seq_len, 1, nullptr, at);
  const size_t n = plain->layout().params().size();

  // Reported path: the next sink sees scaled gradients (a power of two: bitwise 0.25 x).
  auto reported = make();
  Recorder rec(*reported);
  train::GradientScaler scaler(*reported, 0.25, &rec);
  reported->forward_backward(d.x.data(), d.y.data(), 1, nullptr, at);
  reported->forward_backward(d.x.data() + m.seq_len, d.y.data() + m.seq_len, 1, nullptr, at, &scaler);
  scaler.finish();
  ASSERT_EQ(rec.order.size(), n);
  for (size_t i = 0; i < n; ++i) {
    std::vector<float> want = copy_of(*plain, i);
    for (float& v : want) v *= 0.25f;
    EXPECT_EQ(rec.at_report.at(i), want) << plain->layout().params()[i].name;
    EXPECT_EQ(copy_of(*reported, i), want) << "scaled once only: " << plain->layout().params()[i].name;
  }
  // Nothing reported (one process, or no overlap): finish() scales everything, once.
  auto unreported = make();
  train::GradientScaler later(*unreported, 0.25, nullptr);
  unreported->forward_backward(d.x.data(), d.y.data(), 1, nullptr, at);
  unreported->forward_backward(d.x.data() + m.seq_len, d.y.data() + m.seq_len, 1, nullptr, at);
  later.finish();
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(copy_of(*unreported, i), rec.at_report.at(i));
  // The next step starts afresh; a second report of one parameter in a step is a bug.
  later.gradient_final(0);
  EXPECT_THROW(later.gradient_final(0), std::logic_error);
}

TEST(GradientScaler, ArchitectureFactors) {
  config::ModelConfig r26;
  r26.arch = "record26";
  r26.seq_len = 49152;
  EXPECT_EQ(model::gradient_scale(r26, 393216), 0.125);  // upstream: AVG over 8 ranks of one sequence
  EXPECT_EQ(model::gradient_scale(r26, 49152), 1.0);
  r26.seq_len = 64;
  EXPECT_DOUBLE_EQ(model::gradient_scale(r26, 384), 1.0 / 6.0);
  config::ModelConfig t3;  // track3: the SUM over the global batch
  EXPECT_EQ(model::gradient_scale(t3, 524288), 1.0);
  EXPECT_THROW(model::gradient_scale(r26, 100), std::invalid_argument);
}

}  // namespace
}  // namespace speedrun::test
