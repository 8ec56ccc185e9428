// The logit soft cap, and the fused soft-capped cross-entropy: per row of raw logits z,
// the loss and (optionally) the logit gradient, without ever storing the capped logits.
//
// softcap_forward: grid-stride elementwise, 256 threads.
//
// softcap_cross_entropy launch: one block of 512 threads per row (a row is the padded
// vocabulary, 50304 logits = 98 per thread for Track 3; any vocab size works, also smaller
// than the block). Two sweeps over the row, the second mostly from L2 (a row is 200 KB):
//  1. each thread keeps an online (max m, sum l of exp(s - m)) over its logits
//     v = tid, tid + 512, ...; the pairs are combined across the warp by shuffles and
//     across warps by warp 0, in a fixed order. Thread 0 also reads the target's capped
//     logit. Stable: every exp has a non-positive argument.
//     loss = (m - s_target) + log(l), as the CPU.
//  2. (with dz) dz_v = grad_scale * (exp(s_v - m) / l - [v == target]) * softcap'(z_v).
// dz may alias z: the block barrier inside the reduction separates every read of sweep 1
// from the first write of sweep 2, and in sweep 2 each thread reads z_v before writing dz_v.
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"
#include "kernels/ops/softcap.cuh"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowThreads = 512;

template <class T, class Cap>
__global__ void softcap_forward_kernel(T* out, const T* z, int64_t n, Cap cap) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = from_f32<T>(cap.value(to_f32(z[i])));
}

// (m, l) <- the softmax normalizer of the union of two sets: l = l1 e^(m1-m) + l2 e^(m2-m).
// An empty set has l = 0 (and m = -inf): its term is 0, never exp(-inf - -inf) = NaN.
__device__ __forceinline__ void combine(float& m, float& l, float m2, float l2) {
  const float mm = fmaxf(m, m2);
  const float a = l == 0.0f ? 0.0f : l * expf(m - mm);
  const float b = l2 == 0.0f ? 0.0f : l2 * expf(m2 - mm);
  m = mm;
  l = a + b;
}

template <class T, class Cap>
__global__ void __launch_bounds__(kRowThreads) softcap_ce_kernel(float* losses, T* dz, const T* z,
                                                                  const int32_t* targets, int64_t vocab, Cap cap,
                                                                  float grad_scale) {
  __shared__ float warp_m[32], warp_l[32];
  __shared__ float row_m, row_l, s_target;
  const int64_t row = blockIdx.x;
  const T* zr = z + row * vocab;
  const int32_t target = targets[row];
  const bool valid = target >= 0 && target < vocab;
  const float nan = __int_as_float(0x7fc00000);

  float m = kNegInf, l = 0.0f;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    const float s = cap.value(to_f32(zr[v]));
    if (s > m) {
      l = l * expf(m - s) + 1.0f;  // l = 0 at the first element: 0 * e^-inf = 0
      m = s;
    } else {
      l += expf(s - m);  // NaN s lands here and makes l NaN: the loss is NaN
    }
  }
  if (threadIdx.x == 0) s_target = valid ? cap.value(to_f32(zr[target])) : nan;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float m2 = __shfl_xor_sync(kFullMask, m, offset);
    const float l2 = __shfl_xor_sync(kFullMask, l, offset);
    combine(m, l, m2, l2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
  __syncthreads();
  if (warp == 0) {
    float wm = lane < warps ? warp_m[lane] : kNegInf;
    float wl = lane < warps ? warp_l[lane] : 0.0f;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float m2 = __shfl_xor_sync(kFullMask, wm, offset);
      const float l2 = __shfl_xor_sync(kFullMask, wl, offset);
      combine(wm, wl, m2, l2);
    }
    if (lane == 0) {
      row_m = wm;
      row_l = wl;
      losses[row] = (wm - s_target) + logf(wl);
    }
  }
  __syncthreads();
  if (!dz) return;
  const float mm = row_m, ll = row_l;
  T* dzr = dz + row * vocab;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    float s, slope;
    cap.value_and_slope(to_f32(zr[v]), s, slope);
    const float p = expf(s - mm) / ll;
    const float g = v == target ? p - 1.0f : (valid ? p : nan);
    dzr[v] = from_f32<T>(grad_scale * g * slope);
  }
}

}  // namespace

void softcap_forward(DType act, void* out, const void* z, int64_t n, const SoftCap& cap) {
  if (n <= 0) return;
  with_act(act, "softcap_forward", [&]<class T>(std::type_identity<T>) {
    with_device_softcap(cap, [&](auto c) {
      softcap_forward_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<T*>(out),
                                                                                  static_cast<const T*>(z), n, c);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void softcap_cross_entropy(float* losses, DType act, void* dz, const void* z, const int32_t* targets, int64_t rows,
                           int64_t vocab, const SoftCap& cap, float grad_scale) {
  if (rows <= 0) return;
  if (rows > INT32_MAX) throw std::invalid_argument("ops::softcap_cross_entropy: more than 2^31 rows");
  with_act(act, "softcap_cross_entropy", [&]<class T>(std::type_identity<T>) {
    with_device_softcap(cap, [&](auto c) {
      softcap_ce_kernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(
          losses, static_cast<T*>(dz), static_cast<const T*>(z), targets, vocab, c, grad_scale);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace speedrun::cuda
