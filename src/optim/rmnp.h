// RMNP (arXiv 2603.20527, Deng, Ouyang et al.): row-normalized Nesterov momentum.
//   buf = mu buf + G;  U = G + mu buf (Nesterov) or buf;
//   R = U with each row i divided by max(||U_i||_2, eps);  R *= sqrt(max(1, rows/cols));
//   p = p (1 - lr wd) - lr R.
// Rows of the (out, in) matrix are each output neuron's fan-in; tall matrices are not
// transposed (the authors found this trains better). mu may warm up linearly from
// momentum_warmup_start over momentum_warmup_steps (optim/momentum_warmup.h).
#pragma once

#include "optim/optimizer.h"

namespace speedrun::optim {

std::unique_ptr<Optimizer> make_rmnp(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                     const OptimizerContext& context);

}  // namespace speedrun::optim
