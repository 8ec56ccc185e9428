// Newton-Muon (arXiv 2604.01472, Du & Su; Track 3 result #15): Muon on gradients
// right-multiplied by the inverse of a ridge-regularized EMA of each layer's input
// second moment, G <- G (C + r I)^-1 (see input_statistic.h). The statistics are
// captured through the model's LayerInputSink on refresh steps, (step+1) mod k == 0,
// summed over ranks, and refreshed before that step's update; before the first
// refresh the preconditioner is I (plain Muon).
#pragma once

#include "optim/optimizer.h"

namespace speedrun::optim {

std::unique_ptr<Optimizer> make_newton_muon(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                            const OptimizerContext& context);

// Where a block matrix's input is captured: "blocks.3.attn.k.weight" -> (3, attn_qkv).
// False for parameters without a capture point (embedding, head, 1-D parameters).
bool capture_point_of(const std::string& param_name, int64_t& layer, model::CapturePoint& point);

}  // namespace speedrun::optim
