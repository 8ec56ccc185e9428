// The logit soft cap's description, shared by the ops layer (src/ops/cross_entropy.cpp,
// src/ops/cpu/softcap.h) and the CUDA kernels (kernels/ops/softcap.cuh) that implement it;
// it lives here, below both, so that no kernel header depends on src/ops. Plain data.
#pragma once

namespace speedrun {

struct SoftCap {
  enum class Kind { none, algebraic, sigmoid };
  Kind kind = Kind::algebraic;
  double cap = 15.0;          // algebraic: cap*z/sqrt(z^2+cap^2); sigmoid: cap*sigmoid(z/denominator)
  double denominator = 1.0;   // sigmoid only: temperature * sqrt(d_model)
};

}  // namespace speedrun
