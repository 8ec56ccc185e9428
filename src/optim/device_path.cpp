#include "optim/device_path.h"

#include <stdexcept>
#include <string>

#include "build_info.h"

namespace speedrun::optim {

Device group_device(const std::vector<ParamRef>& params, const char* type) {
  if (params.empty()) return Device::cpu;
  const Device device = params.front().param.device;
  for (const ParamRef& p : params) {
    if (p.param.device != device || p.grad.device != device)
      throw std::logic_error(std::string(type) + ": the group's parameters and gradients are on different devices (" +
                             p.name + ")");
    if (p.param.dtype != DType::f32 || p.grad.dtype != DType::f32)
      throw std::logic_error(std::string(type) + ": parameter " + p.name + " or its gradient is not f32");
  }
  if (device == Device::cuda) {
    if (!SPEEDRUN_HAVE_CUDA)
      throw std::logic_error(std::string(type) + ": CUDA parameters in a build without the CUDA backend");
  }
  return device;
}

}  // namespace speedrun::optim
