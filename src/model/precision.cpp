#include "model/precision.h"

#include "core/error.h"

namespace speedrun::model {

DType resolve_activation_dtype(const std::string& setting, Device device) {
  if (setting == "auto") return device == Device::cuda ? DType::bf16 : DType::f32;
  if (setting == "f32") return DType::f32;
  if (setting == "bf16") {
    if (device != Device::cuda)
      throw UserError("train.activation_dtype = \"bf16\": bf16 activations need --device cuda; the CPU backend "
                      "computes in f32 only (use \"f32\" or \"auto\")");
    return DType::bf16;
  }
  throw UserError("train.activation_dtype = \"" + setting + "\": expected one of auto, f32, bf16");
}

DType resolve_embedding_dtype(const config::ModelConfig& m, Device device) {
  if (m.embedding_dtype == "f32") return DType::f32;
  if (m.embedding_dtype == "bf16") {
    if (device != Device::cuda)
      throw UserError("model.embedding_dtype = \"bf16\": a bf16 embedding table needs --device cuda; the CPU backend "
                      "computes in f32 only (use \"f32\")");
    return DType::bf16;
  }
  throw UserError("model.embedding_dtype = \"" + m.embedding_dtype + "\": expected one of f32, bf16");
}

}  // namespace speedrun::model
