#include "model/head.h"

#include <algorithm>
#include <cmath>

#include "ops/ops.h"

namespace speedrun::model {

SoftCap softcap_of(const config::ModelConfig& m) {
  if (m.logit_softcap == "algebraic") return {SoftCap::Kind::algebraic, m.logit_cap, 1.0};
  if (m.logit_softcap == "sigmoid")
    return {SoftCap::Kind::sigmoid, m.logit_cap, m.sigmoid_temperature * std::sqrt(double(m.d_model))};
  return {SoftCap::Kind::none, 0.0, 1.0};
}

double head_loss(const HeadTensors& h, const SoftCap& cap, bool backward) {
  head_losses(h, cap, backward);
  return ops::sum_losses(h.losses.slice_rows(0, h.hf.size(0)));
}

void head_losses(const HeadTensors& h, const SoftCap& cap, bool backward) {
  const int64_t N = h.hf.size(0), chunk = h.logits.size(0);
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t r1 = std::min(N, r0 + chunk);
    const Tensor z = h.logits.slice_rows(0, r1 - r0);
    const Tensor hf = h.hf.slice_rows(r0, r1);
    // Logits of the chunk's dtype: f32 (a bf16 product written in f32 on CUDA's legacy head),
    // or bf16 (the fused head, whose gradient then needs no conversion: dlogits_act is empty).
    ops::linear_forward(z, hf, h.w, h.b);
    // The gradient of the summed loss overwrites the chunk's logits in place.
    ops::softcap_cross_entropy(h.losses.slice_rows(r0, r1), backward ? z : Tensor{}, z, h.targets.slice_rows(r0, r1),
                               cap, 1.0);
    if (backward) {
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
