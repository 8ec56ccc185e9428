#include "model/device_support.h"

#include <string>
#include <utility>

#include "core/error.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::model {

void check_model_runs_on(const config::ModelConfig& m, Device device) {
  if (device != Device::cuda) return;
  // The FP8 head's cuBLASLt products need every dimension a multiple of 16 (kernels/ops/fp8_head.cu).
  if (m.fp8_head)
    for (auto [key, value] : {std::pair<const char*, int64_t>{"model.d_model", m.d_model},
                              {"model.padded_vocab_size", m.padded_vocab_size}, {"model.seq_len", m.seq_len}})
      if (value % 16 != 0)
        throw UserError(std::string("model.fp8_head on CUDA needs ") + key + " to be a multiple of 16 (cuBLASLt's FP8 "
                        "products take 16-byte aligned leading dimensions), got " + std::to_string(value) +
                        "; set model.fp8_head = false or change " + key);
  if (cuda::attention_supports_head_dim(m.head_dim)) return;
  throw UserError("model.head_dim = " + std::to_string(m.head_dim) + ": the CUDA attention kernels support head_dim " +
                  cuda::attention_head_dims_text() + " (the CPU backend any multiple of 4)");
}

}  // namespace speedrun::model
