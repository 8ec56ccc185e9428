// Half-truncated rotary embedding, forward (rotation) and backward (the transpose
// rotation), on (B, T, H, D) tensors with f32 (T', D/2) cos/sin tables.
//
// Launch shape: a grid-stride loop over the B*T*H*(D/2) pairs, 256 threads per block; a
// thread owns the pair (x[j], x[j + D/2]) of one head row, reads both and writes both, so
// out may alias x (and dx dout). Consecutive threads take consecutive j: coalesced.
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;

// sign = +1: y1 = x1 c + x2 s, y2 = -x1 s + x2 c (forward);
// sign = -1: y1 = x1 c - x2 s, y2 = x1 s + x2 c (backward, the transpose).
template <class T, int Sign>
__global__ void rotary_kernel(T* out, const T* x, const float* cos_table, const float* sin_table, int64_t seq,
                              int64_t heads, int64_t half, int64_t pairs) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pairs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / half, j = i % half;
    const int64_t t = (row / heads) % seq;
    const float c = cos_table[t * half + j];
    const float s = sin_table[t * half + j];
    const int64_t at = row * 2 * half + j;
    const float x1 = to_f32(x[at]), x2 = to_f32(x[at + half]);
    if (Sign > 0) {
      out[at] = from_f32<T>(x1 * c + x2 * s);
      out[at + half] = from_f32<T>(x1 * (-s) + x2 * c);
    } else {
      out[at] = from_f32<T>(x1 * c - x2 * s);
      out[at + half] = from_f32<T>(x1 * s + x2 * c);
    }
  }
}

template <int Sign>
void launch(const char* op, DType act, void* out, const void* x, const float* cos, const float* sin, int64_t batch,
            int64_t seq, int64_t heads, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  const int64_t pairs = batch * seq * heads * half;
  if (pairs <= 0) return;
  with_act(act, op, [&]<class T>(std::type_identity<T>) {
    rotary_kernel<T, Sign><<<grid_for(pairs, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(out), static_cast<const T*>(x), cos, sin, seq, heads, half, pairs);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void rotary_forward(DType act, void* out, const void* x, const float* cos, const float* sin, int64_t batch,
                    int64_t seq, int64_t heads, int64_t head_dim) {
  launch<+1>("rotary_forward", act, out, x, cos, sin, batch, seq, heads, head_dim);
}

void rotary_backward(DType act, void* dx, const void* dout, const float* cos, const float* sin, int64_t batch,
                     int64_t seq, int64_t heads, int64_t head_dim) {
  launch<-1>("rotary_backward", act, dx, dout, cos, sin, batch, seq, heads, head_dim);
}

}  // namespace speedrun::cuda
