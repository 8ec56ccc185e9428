#include "model/head.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "ops/ops.h"

namespace speedrun::model {

SoftCap softcap_of(const config::ModelConfig& m) {
  if (m.logit_softcap == "algebraic") return {SoftCap::Kind::algebraic, m.logit_cap, 1.0};
  if (m.logit_softcap == "sigmoid")
    return {SoftCap::Kind::sigmoid, m.logit_cap, m.sigmoid_temperature * std::sqrt(double(m.d_model))};
  return {SoftCap::Kind::none, 0.0, 1.0};
}

ops::Fp8HeadScales fp8_head_scales(const config::ModelConfig& m) {
  return {std::sqrt(static_cast<double>(m.d_model)) / 448.0, 24.0 / 448.0, 1.0 / 448.0, true};
}

double head_loss(const HeadTensors& h, const SoftCap& cap, bool backward, const Fp8HeadTensors* fp8) {
  head_losses(h, cap, backward, fp8);
  return ops::sum_losses(h.losses.slice_rows(0, h.hf.size(0)));
}

void head_losses(const HeadTensors& h, const SoftCap& cap, bool backward, const Fp8HeadTensors* fp8) {
  const int64_t N = h.hf.size(0), chunk = h.logits.size(0);
  if (fp8 && !h.b.empty()) throw std::invalid_argument("head_loss: the FP8 head has no bias");
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t r1 = std::min(N, r0 + chunk);
    const Tensor z = h.logits.slice_rows(0, r1 - r0);
    const Tensor hf = h.hf.slice_rows(r0, r1);
    // CUDA: the chunk's transposed and gradient copies, packed at the start of their buffers.
    ops::Fp8HeadCuda cu;
    if (fp8 && !fp8->cuda.xqt.empty()) {
      const int64_t n = r1 - r0, d = h.hf.size(1), V = h.logits.size(1);
      auto first = [](const Tensor& t, int64_t a, int64_t b) { return Tensor(t.ptr, t.dtype, t.device, {a, b}); };
      cu = {first(fp8->cuda.xqt, d, n), fp8->cuda.wqt, first(fp8->cuda.g, n, V), first(fp8->cuda.gt, V, n)};
    }
    if (fp8) {
      // The weight is rounded once, with the first chunk; later chunks read wq as it is.
      ops::fp8_head_forward(z, fp8->xq.slice_rows(r0, r1), fp8->wq, hf, r0 == 0 ? h.w : Tensor{}, fp8->scales, cu);
    } else {
      // Logits of the chunk's dtype: f32 (a bf16 product written in f32 on CUDA's legacy head),
      // or bf16 (the fused head, whose gradient then needs no conversion: dlogits_act is empty).
      ops::linear_forward(z, hf, h.w, h.b);
    }
    // The gradient of the summed loss overwrites the chunk's logits in place.
    ops::softcap_cross_entropy(h.losses.slice_rows(r0, r1), backward ? z : Tensor{}, z, h.targets.slice_rows(r0, r1),
                               cap, 1.0);
    if (backward && fp8) {
      // upstream's mm_backward: dz rounded to bf16, then e5m2; dW accumulates over chunks.
      ops::fp8_head_backward(h.dhf.slice_rows(r0, r1), h.dw, z, fp8->xq.slice_rows(r0, r1), fp8->wq, fp8->scales,
                             false, cu);
    } else if (backward) {
      // The head's products take their inputs in the activation dtype: round dz once.
      Tensor dz = z;
      if (!h.dlogits_act.empty()) {
        dz = h.dlogits_act.slice_rows(0, r1 - r0);
        ops::convert(dz, z);
      }
      ops::linear_backward(h.dhf.slice_rows(r0, r1), h.dw, h.db, dz, hf, h.w, false);
    }
  }
}

}  // namespace speedrun::model
