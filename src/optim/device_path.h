// Which implementation an optimizer group runs: the CPU code or the CUDA one
// (kernels/optim/optim_cuda.h), chosen from the device its parameters live on. The optimizer
// classes stay device-neutral at the top and branch once, at construction.
#pragma once

#include <functional>
#include <vector>

#include "optim/optimizer.h"

namespace speedrun::optim {

// The device of every parameter and gradient of the group (all must agree; f32 only).
// For Device::cuda, throws std::logic_error in a build without CUDA.
Device group_device(const std::vector<ParamRef>& params, const char* type);

// The bf16 copy pointer a device update kernel writes for params[k]: null when the model lent
// none. A copy must match its parameter's shape and be bf16 on the same device
// (std::logic_error otherwise: a model bug).
void* copy_pointer(const ParamRef& p);

// The layout indices whose copies a device optimizer's kernels write every step: those every
// ref of which (a stack's parts share one index) has a copy and is updated by this rank's
// kernels (`updated_here(k)` for ref k), sorted, unique. For Optimizer::weight_copies_written.
std::vector<size_t> copies_written(const std::vector<ParamRef>& params, const std::function<bool(size_t)>& updated_here);

}  // namespace speedrun::optim
