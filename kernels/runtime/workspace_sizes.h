// Device memory the CUDA backend takes besides the buffers a caller allocates: known up
// front so that the memory plan (train/memory_plan.h) can count it before anything runs.
// Plain C++ (no CUDA header), included by the kernels and by host code alike.
#pragma once

#include <cstddef>

namespace speedrun::cuda {

// The workspace of the one cuBLASLt context (kernels/runtime/cublaslt.cu), made at first use.
inline constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

}  // namespace speedrun::cuda
