// The activation op's kernels: ReLU^2 forward/backward, the residual add and its backward
// (accumulate).
//
// Launch shape: a grid-stride loop, 256 threads per block, at most
// 2^20 blocks; one element per thread per iteration, int64 indices. These kernels are
// bound by memory bandwidth; the loads of consecutive threads are consecutive
// (coalesced). Out-of-place and in-place (out aliasing an input) are both safe: every
// thread reads its element before writing it and no thread touches another's element.
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;

// out = relu(x)^2; NaN propagates (x < 0 is false for NaN), like the CPU op.
template <class T>
__global__ void relu2_forward_kernel(T* out, const T* x, int64_t n) {
  GRID_STRIDE_LOOP(i, n) {
    const float v = to_f32(x[i]);
    const float r = v < 0.0f ? 0.0f : v;
    out[i] = from_f32<T>(r * r);
  }
}

// dx = dout * 2x where x > 0, else 0 (a NaN in dout does not leak through inactive units).
template <class T>
__global__ void relu2_backward_kernel(T* dx, const T* dout, const T* x, int64_t n) {
  GRID_STRIDE_LOOP(i, n) {
    const float v = to_f32(x[i]);
    dx[i] = from_f32<T>(v <= 0.0f ? 0.0f : to_f32(dout[i]) * (2.0f * v));
  }
}

// The recomputing backward (relu2_storage() == recompute; NEVER RUN ON A GPU yet): from the
// stored pre-activation x, g = relu(x)^2 (the input of mlp.proj's weight gradient) and
// dx = dout * 2 relu(x), the formulas of the two kernels above, in one pass: x and dout read
// once, g and dx written once (8 bytes per bf16 element). g may alias x and dx may alias
// dout (each thread reads its element of both before writing either).
template <class T>
__global__ void relu2_backward_recompute_kernel(T* dx, T* g, const T* dout, const T* x, int64_t n) {
  GRID_STRIDE_LOOP(i, n) {
    const float v = to_f32(x[i]);
    const float d = to_f32(dout[i]);
    const float r = v < 0.0f ? 0.0f : v;
    g[i] = from_f32<T>(r * r);
    dx[i] = from_f32<T>(v <= 0.0f ? 0.0f : d * (2.0f * v));
  }
}

template <class T>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i])); }
}

}  // namespace

void relu2_forward(DType act, void* out, const void* x, int64_t n) {
  if (n <= 0) return;
  with_act(act, "relu2_forward", [&]<class T>(std::type_identity<T>) {
    relu2_forward_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<T*>(out),
                                                                            static_cast<const T*>(x), n);
    CUDA_CHECK_LAUNCH();
  });
}

void relu2_backward(DType act, void* dx, const void* dout, const void* x, int64_t n) {
  if (n <= 0) return;
  with_act(act, "relu2_backward", [&]<class T>(std::type_identity<T>) {
    relu2_backward_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(dx), static_cast<const T*>(dout), static_cast<const T*>(x), n);
    CUDA_CHECK_LAUNCH();
  });
}

void relu2_backward_recompute(DType act, void* dx, void* g, const void* dout, const void* x, int64_t n) {
  if (n <= 0) return;
  with_act(act, "relu2_backward_recompute", [&]<class T>(std::type_identity<T>) {
    relu2_backward_recompute_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(dx), static_cast<T*>(g), static_cast<const T*>(dout), static_cast<const T*>(x), n);
    CUDA_CHECK_LAUNCH();
  });
}

namespace {

Relu2Storage relu2_storage_from_environment() {
  const char* value = std::getenv("SPEEDRUN_RELU2");  // <stdlib.h>: nvcc's cuda_runtime.h
  const std::string v = value ? value : "";
  if (v.empty() || v == "legacy") return Relu2Storage::legacy;
  if (v == "recompute") return Relu2Storage::recompute;
  throw UserError("SPEEDRUN_RELU2=" + v + ": expected recompute, legacy or nothing (environment variable)");
}

int relu2_storage_override = -1;  // -1: none; else a Relu2Storage

}  // namespace

Relu2Storage relu2_storage() {
  static const Relu2Storage from_environment = relu2_storage_from_environment();
  return relu2_storage_override < 0 ? from_environment : static_cast<Relu2Storage>(relu2_storage_override);
}

Relu2Storage set_relu2_storage(Relu2Storage storage) {
  const Relu2Storage previous = relu2_storage();
  relu2_storage_override = static_cast<int>(storage);
  return previous;
}

void residual_forward(DType act, void* out, const void* a, const void* b, int64_t n) {
  if (n <= 0) return;
  with_act(act, "residual_forward", [&]<class T>(std::type_identity<T>) {
    add_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<T*>(out), static_cast<const T*>(a),
                                                                   static_cast<const T*>(b), n);
    CUDA_CHECK_LAUNCH();
  });
}

void accumulate(DType act, void* dst, const void* src, int64_t n) {
  if (n <= 0) return;
  with_act(act, "residual_backward", [&]<class T>(std::type_identity<T>) {
    add_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<T*>(dst), static_cast<const T*>(dst),
                                                                   static_cast<const T*>(src), n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace speedrun::cuda
