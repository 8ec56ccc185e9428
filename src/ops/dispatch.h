// Shared plumbing of the ops layer (src/ops/<op>.cpp): argument checks that throw
// std::invalid_argument naming the op, the argument and the shapes, and the dispatch of a
// checked call to the CPU implementation of its dtype or to the CUDA kernels.
//
// Dtypes. CPU tensors are f32 (the model) or f64 (finite-difference tests), one dtype per
// call. CUDA tensors (kernels/ops/ops_cuda.h) have activations of f32 or bf16; with bf16
// activations, everything else in the call is f32: RMSNorm gains and rstd, biases, lse,
// losses and every parameter gradient (`param_dtype` checks those). With f32 activations
// the CUDA rules are the CPU's.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/tensor.h"

namespace speedrun::ops::detail {

// One argument of an op, named for error messages.
struct Arg {
  const char* name;
  const Tensor& tensor;
};

class Checker {
 public:
  explicit Checker(const char* op) : op_(op) {}
  const char* op() const { return op_; }

  [[noreturn]] void fail(const std::string& message) const;

  // The argument is present (not an empty Tensor).
  void present(Arg a) const;
  // Present and f32 or f64 (or bf16 when on CUDA).
  void floating(Arg a) const;
  void dtype(Arg a, DType expected) const;
  void same_dtype(Arg a, Arg reference) const;
  // The dtype of a parameter, statistic or parameter gradient that goes with `activation`:
  // f32 for bf16 activations, else the activation's own dtype (same_dtype's message).
  void param_dtype(Arg a, Arg activation) const;
  // Exactly these dimensions.
  void shape(Arg a, std::initializer_list<int64_t> dims) const;
  void same_shape(Arg a, Arg reference) const;
  // Viewed as a matrix (rows(), size(-1)) it is rows x cols: (B, T, C) and (B*T, C) both pass.
  void matrix(Arg a, int64_t rows, int64_t cols) const;
  void same_matrix(Arg a, Arg reference) const;
  void numel(Arg a, int64_t expected, const char* what) const;
  void ndim(Arg a, int expected) const;
  void ndim_at_least(Arg a, int minimum) const;
  // All present arguments are on one device; returns it.
  Device same_device(std::initializer_list<Arg> args) const;
  // The i32 indices are in [0, limit) (CPU only: reads them).
  void indices_below(Arg a, int64_t limit, const char* limit_what) const;

 private:
  const char* op_;
};

// The prelude of an op's Device::cuda branch: in a CUDA build, checks that `act` is f32 or
// bf16 (std::invalid_argument otherwise); in a CPU-only build, throws std::logic_error
// saying that this binary has no CUDA backend. The call to kernels/ops/ops_cuda.h that follows
// it is the same code in both builds: a CPU-only build links src/ops/ops_cuda_cpu_only.cpp,
// whose definitions throw, and which the prelude keeps out of reach.
void cuda_prelude(const Checker& check, DType act);

// Runs fn(std::type_identity<float>{}) or fn(std::type_identity<double>{}) on the CPU.
// A CUDA tensor reaching it (an op without a CUDA branch): std::logic_error.
template <class Fn>
void dispatch_float(const Checker& check, Device device, DType dtype, Fn&& fn) {
  if (device == Device::cuda) {
    throw std::logic_error(std::string("ops::") + check.op() + ": the CUDA backend does not implement this op");
  }
  switch (dtype) {
    case DType::f32: fn(std::type_identity<float>{}); return;
    case DType::f64: fn(std::type_identity<double>{}); return;
    default: check.fail(std::string("unsupported dtype ") + dtype_name(dtype));
  }
}

// The typed pointer of an optional argument: null when it is empty.
template <class T>
T* data_or_null(const Tensor& t) {
  return t.empty() ? nullptr : t.data<T>();
}

}  // namespace speedrun::ops::detail
