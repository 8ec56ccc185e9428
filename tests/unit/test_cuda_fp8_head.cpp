// The FP8 LM head at the model level on CUDA (model::head_loss with Fp8HeadTensors, as
// Record26::head_loss calls it with model.fp8_head) against the same call on the CPU, whose
// FP8 emulation is checked against the float64 PyTorch reference (test_reference_record26.py).
// This is the head's share of the CudaModel checks, in chunks; the whole model with the FP8
// head: CudaModel.Record26Fp8* (test_cuda_record26.cpp). Compiled only in
// CUDA builds; without a device it reports "skipped: no CUDA device". NEVER RUN ON A GPU YET.
//
// Both sides get the same bf16-rounded hidden states, the same f32 weight and targets. The
// FP8 operands agree bitwise (CudaOpsTest.Fp8HeadQuantizeBitwiseWithTransposedCopy); the
// products differ by summation order and the fast-accumulating forward (CudaOpsTest.
// Fp8HeadForwardBackwardMatchCpu states the bound), which can move a bf16 logit by one ulp
// (2^-8 relative) where the sums straddle a rounding boundary, and through it the logit's
// gradient, whose e5m2 rounding (3 significant bits) can then flip by up to 25% for that one
// element. Such flips are rare (~the bound over the e5m2 spacing, < 1e-3 of the elements), so
// the summed loss agrees to 1e-4 relative and the gradients to 2^-7 as a relative L2 norm
// (sqrt(1e-3) x 25% ~ 0.8%); a layout or scale bug gives errors of order 100%. The CPU's plain
// f32 head is the negative control: it differs from the FP8 result by more than that bound.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "bf16_host.h"
#include "config/run_config.h"
#include "core/buffer.h"
#include "core/device_memory.h"
#include "model/head.h"
#include "test_support.h"

namespace speedrun::test {
namespace {

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / den);
}

template <class T>
Buffer upload(const std::vector<T>& v) {
  Buffer b(Device::cuda, v.size() * sizeof(T));
  device_copy(b.data(), v.data(), v.size() * sizeof(T));
  return b;
}

TEST(CudaModel, Fp8HeadLossMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  config::ModelConfig m;
  m.arch = "record26";
  m.d_model = 64;
  m.padded_vocab_size = 320;
  m.logit_softcap = "sigmoid";
  m.logit_cap = 30;
  m.fp8_head = true;
  const int64_t N = 96, d = m.d_model, V = m.padded_vocab_size;
  const SoftCap cap = model::softcap_of(m);
  const ops::Fp8HeadScales s = model::fp8_head_scales(m);
  std::mt19937_64 rng(test_seed());
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> hf(N * d), w(V * d);
  for (auto& v : hf) v = from_bf16_bits(to_bf16_bits(nd(rng)));  // the bf16 activations both sides see
  for (auto& v : w) v = 0.05f * nd(rng);
  std::vector<int32_t> targets(N);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V - 1));
  for (auto& t : targets) t = tok(rng);

  struct Result {
    double loss;
    std::vector<float> dhf, dw;
  };
  // CPU: the emulation (fp8) or the plain f32 head.
  auto cpu = [&](bool fp8) {
    std::vector<float> logits(N * V), dhf(N * d), dw(V * d, 0.0f), losses(N), xq(N * d), wq(V * d);
    model::Fp8HeadTensors f{s, Tensor::of(xq.data(), {N, d}), Tensor::of(wq.data(), {V, d}), {}};
    const double loss =
        model::head_loss({Tensor::of(hf.data(), {N, d}), Tensor::of(w.data(), {V, d}), Tensor{},
                          Tensor::of(dw.data(), {V, d}), Tensor{}, Tensor::of(dhf.data(), {N, d}),
                          Tensor::of(targets.data(), {N}), Tensor::of(logits.data(), {N, V}), Tensor{},
                          Tensor::of(losses.data(), {N})},
                         cap, true, fp8 ? &f : nullptr);
    return Result{loss, dhf, dw};
  };
  // CUDA, in chunks of `chunk` rows (a multiple of 16).
  auto gpu = [&](int64_t chunk) {
    std::vector<uint16_t> hf_bits(hf.size());
    for (size_t i = 0; i < hf.size(); ++i) hf_bits[i] = to_bf16_bits(hf[i]);
    Buffer ghf = upload(hf_bits), gw = upload(w), gt = upload(targets), gdw = upload(std::vector<float>(V * d, 0.0f));
    Buffer glogits(Device::cuda, chunk * V * 4), gdhf(Device::cuda, N * d * 2), glosses(Device::cuda, N * 4);
    Buffer xq(Device::cuda, N * d), wq(Device::cuda, V * d), xqt(Device::cuda, chunk * d), wqt(Device::cuda, V * d),
        g(Device::cuda, chunk * V), gT(Device::cuda, chunk * V);
    auto dev = [](Buffer& b, DType t, std::initializer_list<int64_t> shape) { return Tensor(b.data(), t, Device::cuda, shape); };
    model::Fp8HeadTensors f{s, dev(xq, DType::e4m3, {N, d}), dev(wq, DType::e4m3, {V, d}),
                            {dev(xqt, DType::e4m3, {d, chunk}), dev(wqt, DType::e4m3, {d, V}),
                             dev(g, DType::e5m2, {chunk, V}), dev(gT, DType::e5m2, {V, chunk})}};
    const double loss = model::head_loss(
        {dev(ghf, DType::bf16, {N, d}), dev(gw, DType::f32, {V, d}), Tensor{}, dev(gdw, DType::f32, {V, d}), Tensor{},
         dev(gdhf, DType::bf16, {N, d}), dev(gt, DType::i32, {N}), dev(glogits, DType::f32, {chunk, V}), Tensor{},
         dev(glosses, DType::f32, {N})},
        cap, true, &f);
    Result r{loss, std::vector<float>(N * d), std::vector<float>(V * d)};
    std::vector<uint16_t> bits(N * d);
    device_copy(bits.data(), gdhf.data(), bits.size() * 2);
    for (size_t i = 0; i < bits.size(); ++i) r.dhf[i] = from_bf16_bits(bits[i]);
    device_copy(r.dw.data(), gdw.data(), r.dw.size() * 4);
    return r;
  };
  const Result want = cpu(true), plain = cpu(false);
  for (int64_t chunk : {N, int64_t{32}}) {  // one pass, and three chunks
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    const Result got = gpu(chunk);
    EXPECT_NEAR(got.loss / want.loss, 1.0, 1e-4);
    EXPECT_LT(rel_l2(got.dhf, want.dhf), 0x1p-7);
    EXPECT_LT(rel_l2(got.dw, want.dw), 0x1p-7);
  }
  // Negative control: the plain head is farther from the FP8 emulation than the bound.
  EXPECT_GT(rel_l2(plain.dw, want.dw), 0x1p-7);
}

}  // namespace
}  // namespace speedrun::test
