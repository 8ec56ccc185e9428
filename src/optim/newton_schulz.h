// Newton-Schulz orthogonalization (Muon's msgn): X -> approximately U V^T of X's SVD.
//   X = bf16(G); transpose if rows > cols; X = X / (||X||_F + 1e-7);
//   repeat steps times: A = X X^T; B = b A + c A A; X = a X + B X;  transpose back.
#pragma once

#include <cstdint>
#include <string>

#include "config/run_config.h"

namespace speedrun::optim {

struct NewtonSchulzSpec {
  double a = 2.0, b = -1.5, c = 0.5;
  int64_t steps = 12;
  bool bf16 = false;  // round every intermediate to bf16, as the GPU computes
};

// The coefficients and step count of a Muon config entry (preset, then overrides);
// `bf16` from ns_precision (auto means fp32 on the CPU).
NewtonSchulzSpec newton_schulz_spec(const config::MuonSettings& s);

// Rounds a float to the nearest bf16 value (ties to even), returned as float.
float round_to_bf16(float x);

// CPU: out (rows x cols) = NewtonSchulz(g (rows x cols)), fp32 GEMMs through BLAS,
// with every intermediate rounded to bf16 when spec.bf16.
void newton_schulz_cpu(const float* g, float* out, int64_t rows, int64_t cols, const NewtonSchulzSpec& spec);

}  // namespace speedrun::optim
