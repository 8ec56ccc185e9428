#include "model/device_support.h"

#include "core/error.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::model {

void check_model_runs_on(const config::ModelConfig& m, Device device) {
  if (device != Device::cuda || cuda::attention_supports_head_dim(m.head_dim)) return;
  throw UserError("model.head_dim = " + std::to_string(m.head_dim) + ": the CUDA attention kernels support head_dim " +
                  cuda::attention_head_dims_text() + " (the CPU backend any multiple of 4)");
}

}  // namespace speedrun::model
