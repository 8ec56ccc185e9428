#include "core/tensor.h"

namespace speedrun {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::u16: return "u16";
    case DType::e4m3: return "e4m3";
    case DType::e5m2: return "e5m2";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Tensor::Tensor(void* p, DType t, Device d, std::initializer_list<int64_t> shape) : ptr(p), dtype(t), device(d) {
  if (shape.size() > kMaxDims) throw std::logic_error("tensor with more than 4 dimensions");
  for (int64_t s : shape) {
    if (s < 0) throw std::logic_error("negative tensor dimension");
    dims[ndim++] = s;
  }
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[i];
  return n;
}

int64_t Tensor::size(int i) const {
  const int j = i < 0 ? ndim + i : i;
  if (j < 0 || j >= ndim) throw std::logic_error("tensor dimension index out of range");
  return dims[j];
}

Tensor Tensor::reshaped(std::initializer_list<int64_t> shape) const {
  Tensor t(ptr, dtype, device, shape);
  if (t.numel() != numel()) throw std::logic_error("reshape " + shape_string() + " -> " + t.shape_string());
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  if (ndim == 0 || begin < 0 || end < begin || end > dims[0]) throw std::logic_error("slice_rows out of range");
  Tensor t = *this;
  t.dims[0] = end - begin;
  const int64_t row_elems = dims[0] == 0 ? 0 : numel() / dims[0];
  t.ptr = static_cast<char*>(ptr) + static_cast<size_t>(begin * row_elems) * dtype_size(dtype);
  return t;
}

std::string Tensor::shape_string() const {
  std::string s = "(";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")";
}

}  // namespace speedrun
