// Which implementation an optimizer group runs: the CPU code or the CUDA one
// (kernels/optim/optim_cuda.h), chosen from the device its parameters live on. The optimizer
// classes stay device-neutral at the top and branch once, at construction.
#pragma once

#include <vector>

#include "optim/optimizer.h"

namespace speedrun::optim {

// The device of every parameter and gradient of the group (all must agree; f32 only).
// For Device::cuda, throws std::logic_error in a build without CUDA.
Device group_device(const std::vector<ParamRef>& params, const char* type);

}  // namespace speedrun::optim
