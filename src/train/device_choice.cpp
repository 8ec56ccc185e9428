#include "train/device_choice.h"

#include "build_info.h"
#include "core/cuda_info.h"
#include "core/error.h"

namespace speedrun::train {

Device resolve_device(const std::string& requested) {
  if (requested == "cpu") return Device::cpu;
  if (requested != "cuda" && requested != "auto")
    throw UserError("device '" + requested + "': expected one of auto, cpu, cuda");
  const CudaStatus cuda = query_cuda();
  if (requested == "auto") return (SPEEDRUN_HAVE_CUDA && !cuda.devices.empty()) ? Device::cuda : Device::cpu;
  if (!SPEEDRUN_HAVE_CUDA) throw UserError("device cuda: this binary was built without CUDA (use --device cpu)");
  if (cuda.devices.empty()) throw UserError("device cuda: no CUDA device: " + cuda.no_device_reason);
  return Device::cuda;
}

}  // namespace speedrun::train
