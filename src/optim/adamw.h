// AdamW with torch.optim.AdamW's semantics: decoupled weight decay applied first,
// bias-corrected moments, eps added to sqrt(v_hat). With eps_placement "v", record #26's
// DistAdam (KellerJordan/modded-nanogpt train_gpt.py at 345b2fb):
//   denom = exp_avg_sq.sqrt().add_(eps); step_size = lr * (sqrt(bias2) / bias1)
//   p -= step_size * exp_avg / denom
// i.e. eps added to sqrt(v) before the bias correction; otherwise the same update.
#pragma once

#include "optim/optimizer.h"

namespace speedrun::optim {

std::unique_ptr<Optimizer> make_adamw(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context);

}  // namespace speedrun::optim
