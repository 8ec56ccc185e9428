// AdamW with torch.optim.AdamW's semantics: decoupled weight decay applied first,
// bias-corrected moments, eps added to sqrt(v_hat).
#pragma once

#include "optim/optimizer.h"

namespace speedrun::optim {

std::unique_ptr<Optimizer> make_adamw(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context);

}  // namespace speedrun::optim
