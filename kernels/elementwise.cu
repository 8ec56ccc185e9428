// Elementwise kernels: ReLU^2 forward/backward, the residual add and its backward
// (accumulate), the bias add and the bias gradient, dtype conversion and NaN fill.
//
// Launch shape (all but bias_grad): a grid-stride loop, 256 threads per block, at most
// 2^20 blocks; one element per thread per iteration, int64 indices. These kernels are
// bound by memory bandwidth; the loads of consecutive threads are consecutive
// (coalesced). Out-of-place and in-place (out aliasing an input) are both safe: every
// thread reads its element before writing it and no thread touches another's element.
#include "kernels/column_sums.cuh"
#include "kernels/common.cuh"
#include "kernels/context.cuh"
#include "kernels/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;

#define GRID_STRIDE_LOOP(i, n)                                                                        \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);             \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

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

template <class T>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i])); }
}

template <class T>
__global__ void bias_add_kernel(T* y, const float* b, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  GRID_STRIDE_LOOP(i, n) { y[i] = from_f32<T>(to_f32(y[i]) + b[i % cols]); }
}

template <class Dst, class Src>
__global__ void convert_kernel(Dst* dst, const Src* src, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { dst[i] = from_f32<Dst>(to_f32(src[i])); }
}

template <class T>
__global__ void fill_nan_kernel(T* dst, int64_t n) {
  const float nan = __int_as_float(0x7fc00000);
  GRID_STRIDE_LOOP(i, n) { dst[i] = from_f32<T>(nan); }
}

// value(r, c) = dy[r, c] for the bias gradient.
template <class T>
struct BiasGradValue {
  const T* dy;
  int64_t cols;
  __device__ float operator()(int64_t r, int64_t c) const { return to_f32(dy[r * cols + c]); }
};

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

void bias_add(DType act, void* y, const float* b, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  with_act(act, "bias_add", [&]<class T>(std::type_identity<T>) {
    bias_add_kernel<T><<<grid_for(rows * cols, kThreads), kThreads, 0, stream()>>>(static_cast<T*>(y), b, rows, cols);
    CUDA_CHECK_LAUNCH();
  });
}

void bias_grad(DType act, float* db, const void* dy, int64_t rows, int64_t cols) {
  with_act(act, "bias_grad", [&]<class T>(std::type_identity<T>) {
    add_column_sums(db, BiasGradValue<T>{static_cast<const T*>(dy), cols}, rows, cols);
  });
}

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
