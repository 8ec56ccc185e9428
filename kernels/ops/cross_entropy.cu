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
//
// The one-pass bf16 kernel (head_kernel() == fused, bf16 logits; NEVER RUN ON A GPU yet:
// tests CudaOpsTest.SoftcapCrossEntropyFused*, scripts/cuda_check.sh). The model's fused head
// writes bf16 logits (upstream's head is a bf16 product too) and this kernel reads each row
// from DRAM once and writes its gradient once, in place:
//   A. the block copies its row into shared memory (16-byte vectors when the row allows it:
//      vocab % 8 == 0 and 16-byte aligned z, dz; else 2-byte elements), each thread keeping the
//      max of the raw logits it copied. The soft caps are non-decreasing, so the row's capped
//      max is cap(max z) (up to the cap's rounding: an exp argument may then exceed 0 by an
//      ulp, which changes nothing). Block max reduction (fixed order).
//   B. each thread sums exp(cap(z_v) - m) over the elements it copied (its own, so no barrier
//      is needed between A and B beyond the reduction's); block sum reduction in a fixed
//      order: deterministic. Thread 0 writes loss = (m - s_target) + log(l), as the CPU.
//   C. (with dz) each thread writes dz_v = grad_scale (e^(s_v - m) / l - [v == target]) s'(z_v)
//      for the elements it copied, from shared memory: dz may alias z (every global read of
//      the row happened in A, by the same thread, before).
// DRAM traffic per row: 2 V bytes read + 2 V bytes written (+ 4 for the target, 4 for the
// loss): 201,224 bytes for V = 50,304 (forward only: 100,612). Shared memory: 2 V bytes
// (98.3 KiB for V = 50,304: two blocks of 512 threads per SM); rows wider than
// kFusedMaxVocab go to the two-sweep kernel. A NaN logit makes the row's sum NaN (fmaxf
// skips it in the max, exp(NaN) does not), so the loss is NaN as on the CPU.
// Arithmetic: the caps' fast_* forms and __expf (softcap.cuh: a few fp32 ulp, far below the
// bf16 rounding of the logits), so that the ~20 instructions per logit stay under the
// memory time (3.3 G logits per Track 3 micro-batch).
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"
#include "kernels/ops/softcap.cuh"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowThreads = 512;

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Raises a kernel's dynamic shared-memory limit (the attribute persists; cheap to repeat).
template <class Kernel>
void set_max_dynamic_smem(Kernel kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

HeadKernel head_kernel_from_environment() {
  const char* value = std::getenv("SPEEDRUN_HEAD");  // <stdlib.h>: nvcc's cuda_runtime.h
  const std::string v = value ? value : "";
  if (v.empty() || v == "legacy") return HeadKernel::legacy;
  if (v == "fused") return HeadKernel::fused;
  throw UserError("SPEEDRUN_HEAD=" + v + ": expected fused, legacy or nothing (environment variable)");
}

int head_kernel_override = -1;  // -1: none; else a HeadKernel

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

// The per-thread element loop of the fused kernel: the row is `chunks` chunks of kVec
// consecutive bf16 (kVec = 8: one 16-byte vector; 1: one element); thread t owns chunks
// t, t + blockDim, ... in every phase.
template <int kVec>
struct alignas(sizeof(bf16) * kVec) RowChunk {  // kVec = 8: 16-byte aligned, so one 16-byte load
  static_assert(kVec == 8 || kVec == 1);
  bf16 v[kVec];
};

constexpr int kFusedThreads = 512;

// Block-wide reductions in a fixed order (the same result on every run): warp shuffles, then
// warp 0 over the warps' values. `scratch` holds 32 floats; the result is returned to every
// thread. Starts with a barrier, so `scratch` may be reused by consecutive calls.
template <bool kMax>
__device__ __forceinline__ float block_reduce_fixed(float x, float* scratch) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float y = __shfl_xor_sync(kFullMask, x, offset);
    x = kMax ? fmaxf(x, y) : x + y;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  __syncthreads();  // a previous call's readers are done with scratch
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  if (warp == 0) {
    float w = lane < warps ? scratch[lane] : (kMax ? kNegInf : 0.0f);
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float y = __shfl_xor_sync(kFullMask, w, offset);
      w = kMax ? fmaxf(w, y) : w + y;
    }
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  return scratch[32];
}

template <int kVec, class Cap>
__global__ void __launch_bounds__(kFusedThreads, 2)
    softcap_ce_bf16_fused_kernel(float* losses, bf16* dz, const bf16* z, const int32_t* targets, int64_t vocab,
                                 Cap cap, float grad_scale) {
  extern __shared__ __align__(16) unsigned char fused_smem[];
  __shared__ float reduce_scratch[33];
  using Chunk = RowChunk<kVec>;
  Chunk* row = reinterpret_cast<Chunk*>(fused_smem);
  const int64_t r = blockIdx.x;
  const int64_t chunks = vocab / kVec;  // exact: kVec == 8 only when vocab % 8 == 0
  const Chunk* zr = reinterpret_cast<const Chunk*>(z + r * vocab);
  const int32_t target = targets[r];
  const bool valid = target >= 0 && target < vocab;
  const float nan = __int_as_float(0x7fc00000);

  // A. the row into shared memory, and the max of the raw logits. kLoadBatch loads are issued
  // before their stores: z is a generic pointer the compiler cannot prove disjoint from the
  // shared row, so it would not hoist a load above the previous store by itself, and one
  // 16-byte load in flight per thread is too little to cover DRAM latency.
  constexpr int kLoadBatch = 4;
  float zmax = kNegInf;
  for (int64_t c0 = threadIdx.x; c0 < chunks; c0 += kLoadBatch * static_cast<int64_t>(blockDim.x)) {
    Chunk x[kLoadBatch];
#pragma unroll
    for (int b = 0; b < kLoadBatch; ++b) {
      const int64_t c = c0 + b * static_cast<int64_t>(blockDim.x);
      if (c < chunks) x[b] = zr[c];
    }
#pragma unroll
    for (int b = 0; b < kLoadBatch; ++b) {
      const int64_t c = c0 + b * static_cast<int64_t>(blockDim.x);
      if (c < chunks) {
        row[c] = x[b];
#pragma unroll
        for (int j = 0; j < kVec; ++j) zmax = fmaxf(zmax, __bfloat162float(x[b].v[j]));
      }
    }
  }
  const float m = cap.fast_value(block_reduce_fixed<true>(zmax, reduce_scratch));

  // B. the softmax normalizer over this thread's own chunks.
  float l = 0.0f;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    const Chunk x = row[c];
#pragma unroll
    for (int j = 0; j < kVec; ++j) l += __expf(cap.fast_value(__bfloat162float(x.v[j])) - m);
  }
  l = block_reduce_fixed<false>(l, reduce_scratch);
  if (threadIdx.x == 0) {
    const bf16* rowv = reinterpret_cast<const bf16*>(row);
    const float s_target = valid ? cap.fast_value(__bfloat162float(rowv[target])) : nan;
    losses[r] = (m - s_target) + logf(l);
  }
  if (!dz) return;

  // C. the gradient, in place.
  Chunk* dzr = reinterpret_cast<Chunk*>(dz + r * vocab);
  const float inv_l = 1.0f / l;
#pragma unroll 2
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    const Chunk x = row[c];
    Chunk out;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      float s, slope;
      cap.fast_value_and_slope(__bfloat162float(x.v[j]), s, slope);
      const float p = __expf(s - m) * inv_l;
      const int64_t v = c * kVec + j;
      const float g = v == target ? p - 1.0f : (valid ? p : nan);
      out.v[j] = __float2bfloat16_rn(grad_scale * g * slope);
    }
    dzr[c] = out;
  }
}

}  // namespace

bool fused_cross_entropy_fits(int64_t vocab) { return vocab >= 1 && vocab <= kFusedMaxVocab; }

HeadKernel head_kernel() {
  static const HeadKernel from_environment = head_kernel_from_environment();
  return head_kernel_override < 0 ? from_environment : static_cast<HeadKernel>(head_kernel_override);
}

HeadKernel set_head_kernel(HeadKernel kernel) {
  const HeadKernel previous = head_kernel();
  head_kernel_override = static_cast<int>(kernel);
  return previous;
}

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
  if (act == DType::bf16 && head_kernel() == HeadKernel::fused && fused_cross_entropy_fits(vocab)) {
    const bool vec = vocab % 8 == 0 && aligned16(z) && (!dz || aligned16(dz));
    const size_t smem = static_cast<size_t>(vocab) * sizeof(bf16);
    with_device_softcap(cap, [&](auto c) {
      auto launch = [&](auto kernel) {
        set_max_dynamic_smem(kernel, smem);
        kernel<<<static_cast<unsigned>(rows), kFusedThreads, smem, stream()>>>(
            losses, static_cast<bf16*>(dz), static_cast<const bf16*>(z), targets, vocab, c, grad_scale);
        CUDA_CHECK_LAUNCH();
      };
      if (vec) launch(softcap_ce_bf16_fused_kernel<8, decltype(c)>);
      else launch(softcap_ce_bf16_fused_kernel<1, decltype(c)>);
    });
    return;
  }
  with_act(act, "softcap_cross_entropy", [&]<class T>(std::type_identity<T>) {
    with_device_softcap(cap, [&](auto c) {
      softcap_ce_kernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(
          losses, static_cast<T*>(dz), static_cast<const T*>(z), targets, vocab, c, grad_scale);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace speedrun::cuda
