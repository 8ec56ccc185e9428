// ops.h: dtype conversion (the model's bf16 weight copies and bf16 logit gradients).
#include <cstring>

#include "build_info.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#if SPEEDRUN_HAVE_CUDA
#include "kernels/ops/ops_cuda.h"
#endif

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
#if SPEEDRUN_HAVE_CUDA
    cuda::convert(dst.dtype, dst.ptr, src.dtype, src.ptr, src.numel());
#endif
    return;
  }
  // The CPU computes in one dtype: a conversion there is a copy.
  check.same_dtype({"dst", dst}, {"src", src});
  if (dst.ptr != src.ptr && src.numel() > 0) std::memcpy(dst.ptr, src.ptr, src.bytes());
}

}  // namespace speedrun::ops
