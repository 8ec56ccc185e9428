#include "train/device_choice.h"

#include "build_info.h"
#include "core/cuda_info.h"
#include "core/error.h"

namespace speedrun::train {

bool cuda_backend_available() { return false; }

Device resolve_device(const std::string& requested) {
  if (requested == "cpu") return Device::cpu;
  if (requested != "cuda" && requested != "auto")
    throw UserError("device '" + requested + "': expected one of auto, cpu, cuda");
  const CudaStatus cuda = query_cuda();
  if (requested == "auto") return (!cuda.devices.empty() && cuda_backend_available()) ? Device::cuda : Device::cpu;
  if (!SPEEDRUN_HAVE_CUDA) throw UserError("device cuda: this binary was built without CUDA (use --device cpu)");
  if (cuda.devices.empty()) throw UserError("device cuda: no CUDA device: " + cuda.no_device_reason);
  if (!cuda_backend_available())
    throw UserError("device cuda: the CUDA backend of the model is not part of this build yet; use --device cpu");
  return Device::cuda;
}

Device resolve_model_device(const std::string& requested) {
  if (requested != "cuda") return resolve_device(requested);
  if (!SPEEDRUN_HAVE_CUDA) throw UserError("device cuda: this binary was built without CUDA (use --device cpu)");
  const CudaStatus cuda = query_cuda();
  if (cuda.devices.empty()) throw UserError("device cuda: no CUDA device: " + cuda.no_device_reason);
  return Device::cuda;
}

}  // namespace speedrun::train
