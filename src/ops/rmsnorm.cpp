// The rmsnorm op (ops.h): RMSNorm, and QK-norm, which is part of this op (RMSNorm without
// gains over each head: the same CPU code and kernels on rows of head_dim). CPU:
// ops/cpu/rmsnorm.h; CUDA: kernels/ops/rmsnorm.cu; tests: tests/unit/ops/test_rmsnorm.cpp.
#include <cmath>

#include "ops/cpu/rmsnorm.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::ops {

using detail::Arg;
using detail::Checker;
using detail::data_or_null;

namespace {

void check_eps(const Checker& check, double eps) {
  if (!(eps >= 0.0) || !std::isfinite(eps)) check.fail("eps = " + std::to_string(eps) + " must be finite and >= 0");
}

// QK-norm views x (N, H*D) as N*H rows of head_dim.
int64_t head_rows(const Checker& check, const Tensor& x, int64_t head_dim) {
  check.floating({"x", x});
  if (head_dim <= 0 || x.ndim < 1 || x.size(-1) % head_dim != 0) {
    check.fail("x has shape " + x.shape_string() + ", whose last dimension is not a multiple of head_dim = " +
               std::to_string(head_dim));
  }
  return x.numel() / head_dim;
}

}  // namespace

void rmsnorm_forward(Tensor out, Tensor rstd, const Tensor& x, const Tensor& gains, double eps) {
  const Checker check("rmsnorm_forward");
  check.floating({"x", x});
  check.ndim_at_least({"x", x}, 1);
  const int64_t rows = x.rows(), channels = x.size(-1);
  check.same_matrix({"out", out}, {"x", x});
  check.same_dtype({"out", out}, {"x", x});
  check.numel({"rstd", rstd}, rows, "one per row of x");
  check.param_dtype({"rstd", rstd}, {"x", x});
  if (!gains.empty()) {
    check.numel({"gains", gains}, channels, "one per column of x");
    check.param_dtype({"gains", gains}, {"x", x});
  }
  check_eps(check, eps);
  const Device device = check.same_device({{"out", out}, {"rstd", rstd}, {"x", x}, {"gains", gains}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    cuda::rmsnorm_forward(x.dtype, out.ptr, rstd.data<float>(), x.ptr, data_or_null<float>(gains), rows, channels,
                          static_cast<float>(eps));
    return;
  }
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::rmsnorm_forward(out.data<T>(), rstd.data<T>(), x.data<T>(), data_or_null<T>(gains), rows, channels,
                         static_cast<T>(eps));
  });
}

void rmsnorm_backward(Tensor dx, Tensor dgains, const Tensor& dout, const Tensor& x, const Tensor& gains,
                      const Tensor& rstd, bool accumulate_dx) {
  const Checker check("rmsnorm_backward");
  check.floating({"x", x});
  check.ndim_at_least({"x", x}, 1);
  const int64_t rows = x.rows(), channels = x.size(-1);
  check.same_matrix({"dout", dout}, {"x", x});
  check.same_dtype({"dout", dout}, {"x", x});
  check.numel({"rstd", rstd}, rows, "one per row of x");
  check.param_dtype({"rstd", rstd}, {"x", x});
  if (!dx.empty()) {
    check.same_matrix({"dx", dx}, {"x", x});
    check.same_dtype({"dx", dx}, {"x", x});
  }
  for (const Arg a : {Arg{"gains", gains}, Arg{"dgains", dgains}}) {
    if (a.tensor.empty()) continue;
    check.numel(a, channels, "one per column of x");
    check.param_dtype(a, {"x", x});
  }
  const Device device = check.same_device(
      {{"dx", dx}, {"dgains", dgains}, {"dout", dout}, {"x", x}, {"gains", gains}, {"rstd", rstd}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    cuda::rmsnorm_backward(x.dtype, dx.empty() ? nullptr : dx.ptr, data_or_null<float>(dgains), dout.ptr, x.ptr,
                           data_or_null<float>(gains), rstd.data<float>(), rows, channels, accumulate_dx);
    return;
  }
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::rmsnorm_backward(data_or_null<T>(dx), data_or_null<T>(dgains), dout.data<T>(), x.data<T>(),
                          data_or_null<T>(gains), rstd.data<T>(), rows, channels, accumulate_dx);
  });
}

void residual_rmsnorm_forward(Tensor sum, Tensor out, Tensor rstd, const Tensor& a, const Tensor& b,
                              const Tensor& gains, double eps) {
  const Checker check("residual_rmsnorm_forward");
  check.floating({"a", a});
  check.ndim_at_least({"a", a}, 1);
  const int64_t rows = a.rows(), channels = a.size(-1);
  for (const Arg t : {Arg{"b", b}, Arg{"sum", sum}, Arg{"out", out}}) {
    check.same_matrix(t, {"a", a});
    check.same_dtype(t, {"a", a});
  }
  check.numel({"rstd", rstd}, rows, "one per row of a");
  check.param_dtype({"rstd", rstd}, {"a", a});
  if (!gains.empty()) {
    check.numel({"gains", gains}, channels, "one per column of a");
    check.param_dtype({"gains", gains}, {"a", a});
  }
  check_eps(check, eps);
  // out over sum would leave one of the two results: refused, whatever the device.
  const size_t bytes = a.bytes();
  const auto* s0 = static_cast<const unsigned char*>(sum.ptr);
  const auto* o0 = static_cast<const unsigned char*>(out.ptr);
  if (bytes > 0 && s0 < o0 + bytes && o0 < s0 + bytes) check.fail("out overlaps sum; they must be distinct");
  const Device device = check.same_device(
      {{"sum", sum}, {"out", out}, {"rstd", rstd}, {"a", a}, {"b", b}, {"gains", gains}});
  if (device == Device::cuda) detail::cuda_prelude(check, a.dtype);
  if (device == Device::cuda && cuda::norm_fusion() == cuda::NormFusion::on) {
    cuda::residual_rmsnorm_forward(a.dtype, sum.ptr, out.ptr, rstd.data<float>(), a.ptr, b.ptr,
                                   data_or_null<float>(gains), rows, channels, static_cast<float>(eps));
    return;
  }
  // The sequence the fused kernel replaces (and the CPU's definition of this op).
  residual_forward(sum, a, b);
  rmsnorm_forward(out, rstd, sum, gains, eps);
}

void qk_norm_forward(Tensor out, Tensor rstd, const Tensor& x, int64_t head_dim, double eps) {
  const Checker check("qk_norm_forward");
  const int64_t rows = head_rows(check, x, head_dim);
  check.same_matrix({"out", out}, {"x", x});
  check.same_dtype({"out", out}, {"x", x});
  check.numel({"rstd", rstd}, rows, "one per head of each row of x");
  check.param_dtype({"rstd", rstd}, {"x", x});
  check_eps(check, eps);
  const Device device = check.same_device({{"out", out}, {"rstd", rstd}, {"x", x}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    cuda::rmsnorm_forward(x.dtype, out.ptr, rstd.data<float>(), x.ptr, nullptr, rows, head_dim,
                          static_cast<float>(eps));
    return;
  }
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::rmsnorm_forward(out.data<T>(), rstd.data<T>(), x.data<T>(), static_cast<const T*>(nullptr), rows, head_dim,
                         static_cast<T>(eps));
  });
}

void qk_norm_backward(Tensor dx, const Tensor& dout, const Tensor& x, const Tensor& rstd, int64_t head_dim) {
  const Checker check("qk_norm_backward");
  const int64_t rows = head_rows(check, x, head_dim);
  check.same_matrix({"dx", dx}, {"x", x});
  check.same_dtype({"dx", dx}, {"x", x});
  check.same_matrix({"dout", dout}, {"x", x});
  check.same_dtype({"dout", dout}, {"x", x});
  check.numel({"rstd", rstd}, rows, "one per head of each row of x");
  check.param_dtype({"rstd", rstd}, {"x", x});
  const Device device = check.same_device({{"dx", dx}, {"dout", dout}, {"x", x}, {"rstd", rstd}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    cuda::rmsnorm_backward(x.dtype, dx.ptr, nullptr, dout.ptr, x.ptr, nullptr, rstd.data<float>(), rows, head_dim,
                           false);
    return;
  }
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::rmsnorm_backward(dx.data<T>(), static_cast<T*>(nullptr), dout.data<T>(), x.data<T>(),
                          static_cast<const T*>(nullptr), rstd.data<T>(), rows, head_dim, false);
  });
}

}  // namespace speedrun::ops
