// Muon (KellerJordan/Muon; Track 3's train_gpt_simple.py):
//   buf = lerp(buf, G, 1-mu); U = lerp(G, buf, mu) (Nesterov) or buf;
//   O = NewtonSchulz(U) * sqrt(max(1, rows/cols)); p = p (1 - lr wd) - lr O.
// mu may warm up linearly from momentum_warmup_start over momentum_warmup_steps.
#pragma once

#include <vector>

#include "optim/newton_schulz.h"
#include "kernels/optim/optim_cuda.h"
#include "optim/optimizer.h"

namespace speedrun::optim {

std::unique_ptr<Optimizer> make_muon(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context);

// The momentum at `step` (0-based) after the optional linear warm-up.
double muon_momentum(const config::MuonSettings& s, int64_t step);

// The device Newton-Schulz settings of a Muon config entry: the CPU's coefficients and
// steps; the iteration in bf16 unless ns_precision is "fp32" ("auto" is bf16 on the GPU).
cuda::NewtonSchulzCoefficients device_newton_schulz(const config::MuonSettings& s);

// The Muon update of one (rows, cols) matrix, shared by Muon and Newton-Muon (which
// hands it the preconditioned gradient).
class MuonMatrixUpdate {
 public:
  explicit MuonMatrixUpdate(const config::MuonSettings& s);
  // buf: the matrix's momentum (updated); g: its gradient; p: the parameter (updated).
  void apply(float* p, const float* g, float* buf, int64_t rows, int64_t cols, int64_t step, double lr, double wd);

 private:
  config::MuonSettings settings_;
  NewtonSchulzSpec ns_;
  std::vector<float> update_, orth_;  // scratch
};

}  // namespace speedrun::optim
