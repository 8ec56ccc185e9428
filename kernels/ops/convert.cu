// The convert op's kernels: dtype conversion between f32 and bf16 (round to nearest even)
// or a copy, and the NaN fill the tests poison outputs with.
//
// Launch shape: a grid-stride loop, 256 threads per block, at most 2^20 blocks; one
// element per thread per iteration, int64 indices (bound by memory bandwidth, coalesced).
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;

template <class Dst, class Src>
__global__ void convert_kernel(Dst* dst, const Src* src, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { dst[i] = from_f32<Dst>(to_f32(src[i])); }
}

template <class T>
__global__ void fill_nan_kernel(T* dst, int64_t n) {
  const float nan = __int_as_float(0x7fc00000);
  GRID_STRIDE_LOOP(i, n) { dst[i] = from_f32<T>(nan); }
}

}  // namespace

void convert(DType dst_type, void* dst, DType src_type, const void* src, int64_t n) {
  if (n <= 0) return;
  with_act(dst_type, "convert", [&]<class D>(std::type_identity<D>) {
    with_act(src_type, "convert", [&]<class S>(std::type_identity<S>) {
      convert_kernel<D, S><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<D*>(dst),
                                                                           static_cast<const S*>(src), n);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void fill_nan(DType type, void* dst, int64_t n) {
  if (n <= 0) return;
  with_act(type, "fill_nan", [&]<class T>(std::type_identity<T>) {
    fill_nan_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<T*>(dst), n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace speedrun::cuda
