#include "optim/device_path.h"

#include <algorithm>
#include <map>
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

void* copy_pointer(const ParamRef& p) {
  if (p.copy.empty()) return nullptr;
  if (p.copy.dtype != DType::bf16 || p.copy.device != p.param.device || p.copy.ndim != p.param.ndim ||
      p.copy.dims != p.param.dims)
    throw std::logic_error("the weight copy of " + p.name + " is not a bf16 tensor of its parameter's shape and device");
  return p.copy.ptr;
}

std::vector<size_t> copies_written(const std::vector<ParamRef>& params, const std::function<bool(size_t)>& updated_here) {
  std::map<size_t, bool> all_written;  // layout index -> every ref of it has a copy written here
  for (size_t k = 0; k < params.size(); ++k) {
    const bool written = !params[k].copy.empty() && updated_here(k);
    auto [it, fresh] = all_written.emplace(params[k].index, written);
    if (!fresh) it->second = it->second && written;
  }
  std::vector<size_t> out;
  for (const auto& [index, written] : all_written)
    if (written) out.push_back(index);
  return out;
}

}  // namespace speedrun::optim
