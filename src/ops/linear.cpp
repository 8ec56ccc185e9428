// The linear op (ops.h): linear layers, i.e. the model's GEMMs. CPU: ops/cpu/linear.h
// (OpenBLAS); CUDA: kernels/ops/linear.cu (cuBLASLt); tests: tests/unit/ops/test_linear.cpp.
#include <climits>

#include "ops/cpu/linear.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::ops {

using detail::Arg;
using detail::Checker;
using detail::data_or_null;

namespace {

struct LinearDims {
  int64_t rows, in, out;
};

// w (out, in) sets the sizes; x is `rows` rows of `in`. OpenBLAS takes int dimensions.
LinearDims linear_dims(const Checker& check, const Tensor& x, const Tensor& w) {
  check.floating({"w", w});
  check.ndim({"w", w}, 2);
  check.same_dtype({"x", x}, {"w", w});
  check.ndim_at_least({"x", x}, 1);
  const LinearDims dims{x.rows(), w.size(1), w.size(0)};
  if (dims.in == 0 || dims.out == 0) check.fail("w has shape " + w.shape_string() + ": no features");
  check.matrix({"x", x}, dims.rows, dims.in);
  if (dims.rows > INT_MAX || dims.in > INT_MAX || dims.out > INT_MAX) {
    check.fail("x " + x.shape_string() + " or w " + w.shape_string() + " has a dimension beyond BLAS's int");
  }
  return dims;
}

}  // namespace

void linear_forward(Tensor y, const Tensor& x, const Tensor& w, const Tensor& b) {
  const Checker check("linear_forward");
  const LinearDims d = linear_dims(check, x, w);
  check.matrix({"y", y}, d.rows, d.out);
  // On CUDA a bf16 product may be written in f32: the LM head's logits, which the loss
  // reads in f32 (cuBLASLt accumulates in fp32 and rounds once, to f32).
  const bool f32_from_bf16 = y.device == Device::cuda && w.dtype == DType::bf16 && y.dtype == DType::f32;
  if (!f32_from_bf16) check.same_dtype({"y", y}, {"w", w});
  if (!b.empty()) {
    check.shape({"b", b}, {d.out});
    // On CUDA a bf16 layer with a bf16 output may take a bf16 bias: the model's bf16 copy,
    // for cuBLASLt's bias epilogue, whose bias has the output's type (kernels/ops/linear.cuh).
    const bool bf16_bias = b.device == Device::cuda && b.dtype == DType::bf16 && w.dtype == DType::bf16 &&
                           y.dtype == DType::bf16;
    if (!bf16_bias) check.param_dtype({"b", b}, {"w", w});
  }
  const Device device = check.same_device({{"y", y}, {"x", x}, {"w", w}, {"b", b}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, w.dtype);
    cuda::linear_forward(w.dtype, y.dtype, y.ptr, x.ptr, w.ptr, b.empty() ? nullptr : b.ptr,
                         b.empty() ? DType::f32 : b.dtype, d.rows, d.in, d.out);
    return;
  }
  detail::dispatch_float(check, device, w.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::linear_forward(y.data<T>(), x.data<T>(), w.data<T>(), data_or_null<T>(b), d.rows, d.in, d.out);
  });
}

void linear_backward(Tensor dx, Tensor dw, Tensor db, const Tensor& dy, const Tensor& x, const Tensor& w,
                     bool accumulate_dx) {
  const Checker check("linear_backward");
  const LinearDims d = linear_dims(check, x, w);
  check.matrix({"dy", dy}, d.rows, d.out);
  check.same_dtype({"dy", dy}, {"w", w});
  if (!dx.empty()) {
    check.matrix({"dx", dx}, d.rows, d.in);
    check.same_dtype({"dx", dx}, {"w", w});
  }
  if (!dw.empty()) {
    check.shape({"dw", dw}, {d.out, d.in});
    check.param_dtype({"dw", dw}, {"w", w});
  }
  if (!db.empty()) {
    check.shape({"db", db}, {d.out});
    check.param_dtype({"db", db}, {"w", w});
  }
  const Device device =
      check.same_device({{"dx", dx}, {"dw", dw}, {"db", db}, {"dy", dy}, {"x", x}, {"w", w}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, w.dtype);
    cuda::linear_backward(w.dtype, dx.empty() ? nullptr : dx.ptr, data_or_null<float>(dw), data_or_null<float>(db),
                          dy.ptr, x.ptr, w.ptr, d.rows, d.in, d.out, accumulate_dx);
    return;
  }
  detail::dispatch_float(check, device, w.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::linear_backward(data_or_null<T>(dx), data_or_null<T>(dw), data_or_null<T>(db), dy.data<T>(), x.data<T>(),
                         w.data<T>(), d.rows, d.in, d.out, accumulate_dx);
  });
}

}  // namespace speedrun::ops
