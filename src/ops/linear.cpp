// The linear op (ops.h): linear layers, i.e. the model's GEMMs. CPU: ops/cpu/linear.h
// (OpenBLAS); CUDA: kernels/ops/linear.cu (cuBLASLt); tests: tests/unit/ops/test_linear.cpp.
#include <array>
#include <climits>
#include <cstdint>
#include <utility>

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

namespace {

// linear_forward's argument checks; returns the sizes and the device.
std::pair<LinearDims, Device> check_forward(const Checker& check, const Tensor& y, const Tensor& x, const Tensor& w,
                                            const Tensor& b) {
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
  return {d, check.same_device({{"y", y}, {"x", x}, {"w", w}, {"b", b}})};
}

// linear_backward's argument checks; returns the sizes and the device.
std::pair<LinearDims, Device> check_backward(const Checker& check, const Tensor& dx, const Tensor& dw,
                                             const Tensor& db, const Tensor& dy, const Tensor& x, const Tensor& w) {
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
  return {d, check.same_device({{"dx", dx}, {"dw", dw}, {"db", db}, {"dy", dy}, {"x", x}, {"w", w}})};
}

// The element stride at which three tensors of one dtype follow each other in memory:
// positive and equal between neighbours, else 0 (also when one is absent).
int64_t common_stride(const std::array<Tensor, 3>& t) {
  for (const Tensor& e : t)
    if (e.empty() || e.dtype != t[0].dtype) return 0;
  const auto address = [&](int i) { return reinterpret_cast<intptr_t>(t[i].ptr); };
  const intptr_t step = address(1) - address(0), size = static_cast<intptr_t>(dtype_size(t[0].dtype));
  if (step <= 0 || step != address(2) - address(1) || step % size != 0) return 0;
  return static_cast<int64_t>(step / size);
}

bool same_dims(const std::array<std::pair<LinearDims, Device>, 3>& c) {
  for (const auto& e : c)
    if (e.first.rows != c[0].first.rows || e.first.in != c[0].first.in || e.first.out != c[0].first.out) return false;
  return true;
}

}  // namespace

void linear_forward(Tensor y, const Tensor& x, const Tensor& w, const Tensor& b) {
  const Checker check("linear_forward");
  const auto checked = check_forward(check, y, x, w, b);
  const LinearDims d = checked.first;
  const Device device = checked.second;
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

void linear_forward_qkv(const std::array<Tensor, 3>& y, const Tensor& x, const std::array<Tensor, 3>& w,
                        const std::array<Tensor, 3>& b) {
  const Checker check("linear_forward_qkv");
  const std::array<std::pair<LinearDims, Device>, 3> c = {
      check_forward(check, y[0], x, w[0], b[0]), check_forward(check, y[1], x, w[1], b[1]),
      check_forward(check, y[2], x, w[2], b[2])};
  if (c[0].second == Device::cuda) {
    detail::cuda_prelude(check, w[0].dtype);
    const int64_t y_stride = common_stride(y), w_stride = common_stride(w), b_stride = common_stride(b);
    const bool no_bias = b[0].empty() && b[1].empty() && b[2].empty();
    const LinearDims& d = c[0].first;
    if (cuda::gemm_epilogue() == cuda::GemmEpilogue::fused && same_dims(c) && y_stride > 0 && w_stride > 0 &&
        (no_bias || b_stride > 0) && y[0].dtype == w[0].dtype &&
        cuda::linear_forward_batched(w[0].dtype, y[0].ptr, y_stride, x.ptr, w[0].ptr, w_stride,
                                     no_bias ? nullptr : b[0].ptr, no_bias ? DType::f32 : b[0].dtype, b_stride, 3,
                                     d.rows, d.in, d.out))
      return;
  }
  for (int i = 0; i < 3; ++i) linear_forward(y[i], x, w[i], b[i]);
}

void linear_backward(Tensor dx, Tensor dw, Tensor db, const Tensor& dy, const Tensor& x, const Tensor& w,
                     bool accumulate_dx) {
  const Checker check("linear_backward");
  const auto checked = check_backward(check, dx, dw, db, dy, x, w);
  const LinearDims d = checked.first;
  const Device device = checked.second;
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

void linear_backward_qkv(Tensor dx, const std::array<Tensor, 3>& dw, const std::array<Tensor, 3>& db,
                         const std::array<Tensor, 3>& dy, const Tensor& x, const std::array<Tensor, 3>& w,
                         bool accumulate_dx) {
  const Checker check("linear_backward_qkv");
  const std::array<std::pair<LinearDims, Device>, 3> c = {check_backward(check, dx, dw[0], db[0], dy[0], x, w[0]),
                                                          check_backward(check, dx, dw[1], db[1], dy[1], x, w[1]),
                                                          check_backward(check, dx, dw[2], db[2], dy[2], x, w[2])};
  if (c[0].second == Device::cuda) {
    detail::cuda_prelude(check, w[0].dtype);
    const int64_t dw_stride = common_stride(dw), dy_stride = common_stride(dy), db_stride = common_stride(db);
    const bool no_db = db[0].empty() && db[1].empty() && db[2].empty();
    const LinearDims& d = c[0].first;
    if (cuda::gemm_epilogue() == cuda::GemmEpilogue::fused && same_dims(c) && dw_stride > 0 && dy_stride > 0 &&
        (no_db || db_stride > 0)) {
      // dx: three products accumulating (dx = dy_q W_q + dy_k W_k + dy_v W_v cannot be one
      // product while dq, dk and dv are separate matrices); the weight gradients: one.
      for (int i = 0; i < 3; ++i) linear_backward(dx, Tensor(), Tensor(), dy[i], x, w[i], accumulate_dx || i > 0);
      if (cuda::linear_weight_grad_batched(w[0].dtype, static_cast<float*>(dw[0].ptr), dw_stride,
                                           no_db ? nullptr : static_cast<float*>(db[0].ptr), db_stride, dy[0].ptr,
                                           dy_stride, x.ptr, 3, d.rows, d.in, d.out))
        return;
      for (int i = 0; i < 3; ++i) linear_backward(Tensor(), dw[i], db[i], dy[i], x, w[i], false);
      return;
    }
  }
  for (int i = 0; i < 3; ++i) linear_backward(dx, dw[i], db[i], dy[i], x, w[i], accumulate_dx || i > 0);
}

}  // namespace speedrun::ops
