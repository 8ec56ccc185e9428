#include "ops/dispatch.h"

#include <string>

#include "build_info.h"

namespace speedrun::ops::detail {
namespace {

std::string dims_string(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  bool first = true;
  for (int64_t d : dims) {
    s += (first ? "" : ", ") + std::to_string(d);
    first = false;
  }
  return s + ")";
}

}  // namespace

void Checker::fail(const std::string& message) const {
  throw std::invalid_argument(std::string("ops::") + op_ + ": " + message);
}

void Checker::present(Arg a) const {
  if (a.tensor.empty()) fail(std::string(a.name) + " is missing (empty tensor)");
}

void Checker::floating(Arg a) const {
  present(a);
  if (a.tensor.device == Device::cuda && a.tensor.dtype == DType::bf16) return;
  if (a.tensor.dtype != DType::f32 && a.tensor.dtype != DType::f64) {
    fail(std::string(a.name) + " has dtype " + dtype_name(a.tensor.dtype) + ", expected f32 or f64");
  }
}

void Checker::param_dtype(Arg a, Arg activation) const {
  if (activation.tensor.dtype != DType::bf16) {
    same_dtype(a, activation);
    return;
  }
  present(a);
  if (a.tensor.dtype != DType::f32) {
    fail(std::string(a.name) + " has dtype " + dtype_name(a.tensor.dtype) + ", expected f32 (it goes with bf16 " +
         activation.name + ")");
  }
}

void cuda_prelude(const Checker& check, DType act) {
  if (!SPEEDRUN_HAVE_CUDA) {
    throw std::logic_error(std::string("ops::") + check.op() +
                           ": this binary was built without the CUDA backend (SPEEDRUN_HAVE_CUDA = 0)");
  }
  if (act != DType::f32 && act != DType::bf16) {
    check.fail(std::string("the CUDA backend takes f32 or bf16 tensors, not ") + dtype_name(act));
  }
}

void Checker::dtype(Arg a, DType expected) const {
  present(a);
  if (a.tensor.dtype != expected) {
    fail(std::string(a.name) + " has dtype " + dtype_name(a.tensor.dtype) + ", expected " + dtype_name(expected));
  }
}

void Checker::same_dtype(Arg a, Arg reference) const {
  present(a);
  if (a.tensor.dtype != reference.tensor.dtype) {
    fail(std::string(a.name) + " has dtype " + dtype_name(a.tensor.dtype) + ", expected " +
         dtype_name(reference.tensor.dtype) + " like " + reference.name);
  }
}

void Checker::shape(Arg a, std::initializer_list<int64_t> dims) const {
  present(a);
  bool ok = a.tensor.ndim == static_cast<int>(dims.size());
  int i = 0;
  for (int64_t d : dims) ok = ok && a.tensor.dims[i++] == d;
  if (!ok) fail(std::string(a.name) + " has shape " + a.tensor.shape_string() + ", expected " + dims_string(dims));
}

void Checker::same_shape(Arg a, Arg reference) const {
  present(a);
  bool ok = a.tensor.ndim == reference.tensor.ndim;
  for (int i = 0; ok && i < a.tensor.ndim; ++i) ok = a.tensor.dims[i] == reference.tensor.dims[i];
  if (!ok) {
    fail(std::string(a.name) + " has shape " + a.tensor.shape_string() + ", expected " +
         reference.tensor.shape_string() + " like " + reference.name);
  }
}

void Checker::matrix(Arg a, int64_t rows, int64_t cols) const {
  present(a);
  if (a.tensor.ndim < 1 || a.tensor.size(-1) != cols || a.tensor.rows() != rows) {
    fail(std::string(a.name) + " has shape " + a.tensor.shape_string() + ", expected " + std::to_string(rows) +
         " rows of " + std::to_string(cols));
  }
}

void Checker::same_matrix(Arg a, Arg reference) const {
  present(a);
  const Tensor& r = reference.tensor;
  if (a.tensor.ndim < 1 || a.tensor.size(-1) != r.size(-1) || a.tensor.rows() != r.rows()) {
    fail(std::string(a.name) + " has shape " + a.tensor.shape_string() + ", expected " + std::to_string(r.rows()) +
         " rows of " + std::to_string(r.size(-1)) + " like " + reference.name + " " + r.shape_string());
  }
}

void Checker::numel(Arg a, int64_t expected, const char* what) const {
  present(a);
  if (a.tensor.numel() != expected) {
    fail(std::string(a.name) + " has shape " + a.tensor.shape_string() + ", expected " + std::to_string(expected) +
         " elements (" + what + ")");
  }
}

void Checker::ndim(Arg a, int expected) const {
  present(a);
  if (a.tensor.ndim != expected) {
    fail(std::string(a.name) + " has shape " + a.tensor.shape_string() + ", expected " + std::to_string(expected) +
         " dimensions");
  }
}

void Checker::ndim_at_least(Arg a, int minimum) const {
  present(a);
  if (a.tensor.ndim < minimum) {
    fail(std::string(a.name) + " has shape " + a.tensor.shape_string() + ", expected at least " +
         std::to_string(minimum) + " dimensions");
  }
}

Device Checker::same_device(std::initializer_list<Arg> args) const {
  const Arg* first = nullptr;
  for (const Arg& a : args) {
    if (a.tensor.empty()) continue;
    if (!first) {
      first = &a;
    } else if (a.tensor.device != first->tensor.device) {
      fail(std::string(a.name) + " is on " + device_name(a.tensor.device) + " but " + first->name + " is on " +
           device_name(first->tensor.device));
    }
  }
  return first ? first->tensor.device : Device::cpu;
}

void Checker::indices_below(Arg a, int64_t limit, const char* limit_what) const {
  if (a.tensor.device != Device::cpu) return;
  const int32_t* p = a.tensor.data<int32_t>();
  const int64_t n = a.tensor.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] < 0 || p[i] >= limit) {
      fail(std::string(a.name) + "[" + std::to_string(i) + "] = " + std::to_string(p[i]) + " is outside [0, " +
           std::to_string(limit) + ") (" + limit_what + ")");
    }
  }
}

}  // namespace speedrun::ops::detail
