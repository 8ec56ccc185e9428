// The scaled-sum and dot ops (ops.h): record26's learned scalars. CPU: ops/cpu/scale.h;
// CUDA: kernels/ops/scale.cu; tests: tests/unit/ops/test_scale.cpp.
#include "kernels/ops/ops_cuda.h"
#include "ops/cpu/scale.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

namespace speedrun::ops {

using detail::Checker;

void scaled_sum(Tensor out, double alpha, const Tensor& x, double beta, const Tensor& y) {
  const Checker check("scaled_sum");
  check.present({"out", out});
  check.floating({"x", x});
  check.numel({"out", out}, x.numel(), "x's");
  check.same_dtype({"out", out}, {"x", x});
  if (!y.empty()) {
    check.numel({"y", y}, x.numel(), "x's");
    check.same_dtype({"y", y}, {"x", x});
  }
  const Device device = check.same_device({{"out", out}, {"x", x}, {"y", y}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    cuda::scaled_sum(x.dtype, out.ptr, static_cast<float>(alpha), x.ptr, static_cast<float>(beta),
                     y.empty() ? nullptr : y.ptr, x.numel());
    return;
  }
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::scaled_sum(out.data<T>(), static_cast<T>(alpha), x.data<T>(), static_cast<T>(beta),
                    detail::data_or_null<T>(y), x.numel());
  });
}

double dot(const Tensor& x, const Tensor& y) {
  const Checker check("dot");
  check.floating({"x", x});
  check.numel({"y", y}, x.numel(), "x's");
  check.same_dtype({"y", y}, {"x", x});
  const Device device = check.same_device({{"x", x}, {"y", y}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    return cuda::dot(x.dtype, x.ptr, y.ptr, x.numel());
  }
  double result = 0.0;
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    result = cpu::dot_all(x.data<T>(), y.data<T>(), x.numel());
  });
  return result;
}

}  // namespace speedrun::ops
