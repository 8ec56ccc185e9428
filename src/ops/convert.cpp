// The convert op (ops.h): dtype conversion (the model's bf16 weight copies and bf16 logit
// gradients). CPU: ops/cpu/convert.h; CUDA: kernels/ops/convert.cu; tests:
// tests/unit/ops/test_convert.cpp.
#include "ops/cpu/convert.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::ops {

using detail::Checker;

void convert(Tensor dst, const Tensor& src) {
  const Checker check("convert");
  check.floating({"src", src});
  check.floating({"dst", dst});
  check.numel({"dst", dst}, src.numel(), "as many as src");
  const Device device = check.same_device({{"dst", dst}, {"src", src}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, src.dtype);
    detail::cuda_prelude(check, dst.dtype);
    cuda::convert(dst.dtype, dst.ptr, src.dtype, src.ptr, src.numel());
    return;
  }
  // The CPU computes in one dtype: a conversion there is a copy.
  check.same_dtype({"dst", dst}, {"src", src});
  detail::dispatch_float(check, device, src.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::convert(dst.data<T>(), src.data<T>(), src.numel());
  });
}

}  // namespace speedrun::ops
