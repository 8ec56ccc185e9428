// Muon (KellerJordan/Muon; Track 3's train_gpt_simple.py):
//   buf = lerp(buf, G, 1-mu); U = lerp(G, buf, mu) (Nesterov) or buf;
//   O = NewtonSchulz(U) * sqrt(max(1, rows/cols)); p = p (1 - lr wd) - lr O.
// mu may warm up linearly from momentum_warmup_start over momentum_warmup_steps.
#pragma once

#include "optim/optimizer.h"

namespace speedrun::optim {

std::unique_ptr<Optimizer> make_muon(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context);

// The momentum at `step` (0-based) after the optional linear warm-up.
double muon_momentum(const config::MuonSettings& s, int64_t step);

}  // namespace speedrun::optim
