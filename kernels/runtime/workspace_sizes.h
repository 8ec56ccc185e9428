// Device memory the CUDA backend takes besides the buffers a caller allocates: known up
// front so that the memory plan (train/memory_plan.h) can count it before anything runs.
// Plain C++ (no CUDA header), included by the kernels and by host code alike.
#pragma once

#include <cstddef>

namespace speedrun::cuda {

// cuBLASLt's workspace (kernels/ops/linear.cu), allocated at the first product.
inline constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

}  // namespace speedrun::cuda
