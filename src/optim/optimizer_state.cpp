#include "optim/optimizer_state.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/optim/optim_cuda.h"
#include "optim/matrix_sharding.h"

namespace speedrun::optim {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

}  // namespace

StateTensor f32_state(std::string name, std::vector<int64_t> shape, std::vector<float> values) {
  StateTensor t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.f32 = std::move(values);
  return t;
}

StateTensor i64_state(std::string name, int64_t value) {
  StateTensor t;
  t.name = std::move(name);
  t.i64 = {value};
  return t;
}

std::vector<int64_t> shape_of(const Tensor& t) { return {t.dims.begin(), t.dims.begin() + t.ndim}; }

std::vector<float> to_host(const float* src, int64_t n, Device device) {
  std::vector<float> out(static_cast<size_t>(n));
  if (n == 0) return out;
  if (device == Device::cpu)
    std::copy(src, src + n, out.begin());
  else
    cuda::copy_state(out.data(), src, static_cast<size_t>(n) * sizeof(float));
  return out;
}

void from_host(float* dst, const float* src, int64_t n, Device device) {
  if (n == 0) return;
  if (device == Device::cpu)
    std::copy(src, src + n, dst);
  else
    cuda::copy_state(dst, src, static_cast<size_t>(n) * sizeof(float));
}

std::vector<StateTensor> export_momentum(const std::vector<ParamRef>& params, const MatrixSharding& sharding,
                                         dist::Communicator& comm, const std::vector<std::vector<float>>& cpu,
                                         const std::vector<Tensor>& device) {
  std::vector<StateTensor> out;
  size_t owned = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& p = params[k].param;
    std::vector<float> values(static_cast<size_t>(p.numel()));
    if (sharding.owns(k)) {
      if (device.empty())
        values = cpu[k];
      else
        values = to_host(device.at(owned).data<float>(), p.numel(), Device::cuda);
      ++owned;
    }
    if (comm.world() > 1) comm.broadcast(Tensor::of(values.data(), {p.numel()}), sharding.owner(k));
    out.push_back(f32_state(params[k].name + ".momentum_buffer", shape_of(p), std::move(values)));
  }
  return out;
}

void import_momentum(const StateSource& source, const std::vector<ParamRef>& params, const MatrixSharding& sharding,
                     std::vector<std::vector<float>>& cpu, const std::vector<Tensor>& device) {
  size_t owned = 0;
  std::vector<float> values;
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& p = params[k].param;
    values.resize(static_cast<size_t>(p.numel()));
    // Every rank reads every tensor, so that a missing one fails on all ranks alike.
    source.read_f32(params[k].name + ".momentum_buffer", shape_of(p), values.data());
    if (!sharding.owns(k)) continue;
    if (device.empty())
      cpu[k] = values;
    else
      from_host(device.at(owned).data<float>(), values.data(), p.numel(), Device::cuda);
    ++owned;
  }
}

const StateTensor& MemoryStateSource::find(const std::string& name) const {
  for (const StateTensor& t : state_)
    if (t.name == name) return t;
  throw UserError("optimizer state: no tensor " + name);
}

void MemoryStateSource::read_f32(const std::string& name, const std::vector<int64_t>& shape, float* out) const {
  const StateTensor& t = find(name);
  if (t.is_i64() || t.shape != shape)
    throw UserError("optimizer state: tensor " + name + " is " + (t.is_i64() ? "i64 " : "f32 ") +
                    shape_text(t.shape) + ", expected f32 " + shape_text(shape));
  std::copy(t.f32.begin(), t.f32.end(), out);
}

int64_t MemoryStateSource::read_i64(const std::string& name) const {
  const StateTensor& t = find(name);
  if (!t.is_i64() || !t.shape.empty()) throw UserError("optimizer state: tensor " + name + " is not an i64 scalar");
  return t.i64.front();
}

}  // namespace speedrun::optim
