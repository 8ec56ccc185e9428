// Causal softmax attention, flash style: forward and backward without a T x T matrix in
// device memory. Inputs (B, T, H, D) of f32 or bf16; arithmetic and the softmax statistics
// in fp32; the forward saves lse[b, h, t] = log sum_s exp(scale q_t . k_s) for the backward.
//
// This is the simple, correctness-first version: the tile products run on the CUDA cores
// (fp32 FMA from shared memory). It serves f32 always, and bf16 only with
// SPEEDRUN_ATTENTION=simt (or unaligned pointers): bf16 attention otherwise goes to the
// tensor-core kernels of kernels/ops/attention_tc.cu (same tiles, online softmax, masks and
// backward structure; use_tensor_core_attention below decides), or with
// SPEEDRUN_ATTENTION=flash to the FlashAttention-2-class kernels of
// kernels/ops/attention_flash.cu (use_flash_attention decides; not yet run on a GPU).
//
// Tiles: Br = Bc = 64 query/key rows, head_dim D in {64, 128} (template), 256 threads.
// Shared memory holds the tiles in fp32; rows read by a warp at 32 different keys are
// padded by one float (stride D+1, Bc+1) so that those reads hit 32 different banks.
// More than 48 KB of dynamic shared memory, raised per kernel with cudaFuncSetAttribute.
//
// Thread roles inside a block (tid = threadIdx.x):
//  - score tiles: entry e = tid + 256 i (i < 16) is (row e / 64, col e % 64): a warp covers
//    one row and 32 consecutive columns, so the row's operand is a broadcast and the
//    column operand's padded rows are conflict-free.
//  - row statistics (forward): warp w owns rows 8w .. 8w+7; each lane two columns.
//  - accumulators: thread owns row tid / 4 and columns d = tid % 4 + 4 j (j < D / 4) of the
//    output tile, kept in registers (D/4 floats: 32 for D = 128).
//
// Masks: a Mask type says which (query t, key s) pairs are allowed, bounds the tile loops
// (key_begin/key_end for a query tile, query_begin/query_end for a key tile) and classifies
// each (query tile, key tile) block: masked blocks are skipped before loading, full ones
// skip the per-element test. The causal mask (attention_common.cuh) and record #26's
// document and window mask (DocWindowMask, attention_mask.h; not yet run on a GPU).
// Rows fully masked inside a tile are handled (their running max stays -inf, their
// probabilities 0), so such masks need no change to the kernels.
//
// Determinism: no atomics. The backward runs one kernel per key tile for dK, dV (looping
// over query tiles) and one per query tile for dQ (looping over key tiles), recomputing the
// probabilities in each, like the CPU's two passes.
#include <algorithm>

#include "kernels/ops/attention_common.cuh"
#include "kernels/ops/attention_flash.h"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBr = 64;  // query rows per tile
constexpr int kBc = 64;  // key rows per tile
constexpr int kTpr = kThreads / kBr;  // threads per accumulator row
static_assert(kBr == kBc, "the backward starts the query loop at the key tile's first row");
static_assert(kBc == 64, "the forward's row statistics give each lane two columns");
static_assert(kThreads / 32 * 8 == kBr, "8 rows per warp in the forward's row statistics");

// Loads rows [row0, row0 + rows) of one head (row t at base + t * stride) into a
// rows x D shared tile with row pitch `pitch`, zero-filling rows at or beyond seq.
template <int D, class T>
__device__ void load_tile(float* tile, int pitch, const T* src, int64_t base, int64_t stride, int64_t row0, int rows,
                          int64_t seq) {
  for (int e = threadIdx.x; e < rows * D; e += kThreads) {
    const int r = e / D, d = e % D;
    const int64_t t = row0 + r;
    tile[r * pitch + d] = t < seq ? to_f32(src[base + t * stride + d]) : 0.0f;
  }
}

template <int D>
__device__ __forceinline__ float dot_rows(const float* a, const float* b) {
  float acc = 0.0f;
#pragma unroll 16
  for (int d = 0; d < D; ++d) acc += a[d] * b[d];
  return acc;
}

// ---- forward -------------------------------------------------------------------------------
template <int D>
struct FwdSmem {
  static constexpr int q = 0;                       // kBr x D
  static constexpr int k = q + kBr * D;             // kBc x (D+1)
  static constexpr int v = k + kBc * (D + 1);       // kBc x D
  static constexpr int p = v + kBc * D;             // kBr x (kBc+1)
  static constexpr int m = p + kBr * (kBc + 1);     // kBr running max
  static constexpr int l = m + kBr;                 // kBr running sum
  static constexpr int alpha = l + kBr;             // kBr rescale of this tile
  static constexpr int floats = alpha + kBr;
  static constexpr size_t bytes = floats * sizeof(float);
};

// grid (ceil(T / kBr), B * H), kThreads threads; block = one query tile of one head.
template <class T, int D, class Mask>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(T* out, float* lse, const T* q, const T* k,
                                                                     const T* v, int64_t seq, int64_t heads,
                                                                     float scale, Mask mask_arg) {
  extern __shared__ float smem[];
  using L = FwdSmem<D>;
  float* qs = smem + L::q;
  float* ks = smem + L::k;
  float* vs = smem + L::v;
  float* ps = smem + L::p;
  float* ms = smem + L::m;
  float* ls = smem + L::l;
  float* as = smem + L::alpha;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const Mask mask = mask_arg.at_batch(b);
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kBr;
  const int64_t q1 = q0 + kBr < seq ? q0 + kBr : seq;
  const int64_t stride = heads * D, base = (b * seq * heads + h) * D;

  load_tile<D>(qs, D, q, base, stride, q0, kBr, seq);
  if (tid < kBr) {
    ms[tid] = kNegInf;
    ls[tid] = 0.0f;
  }
  const int row = tid / kTpr, sub = tid % kTpr;
  float acc[D / kTpr];
#pragma unroll
  for (int j = 0; j < D / kTpr; ++j) acc[j] = 0.0f;

  const int64_t k_end = mask.key_end(q1) < seq ? mask.key_end(q1) : seq;
  for (int64_t k0 = mask.key_begin(q0) / kBc * kBc; k0 < k_end; k0 += kBc) {
    const int64_t k1 = k0 + kBc < seq ? k0 + kBc : seq;
    const BlockKind kind = mask.block(q0, q1, k0, k1);
    if (kind == BlockKind::masked) continue;  // wholly hidden: never loaded
    __syncthreads();  // the previous tile's ps, ks, vs are no longer read
    load_tile<D>(ks, D + 1, k, base, stride, k0, kBc, seq);
    load_tile<D>(vs, D, v, base, stride, k0, kBc, seq);
    __syncthreads();
    // Scores of the tile, -inf where masked or out of range.
    for (int e = tid; e < kBr * kBc; e += kThreads) {
      const int r = e / kBc, c = e % kBc;
      const int64_t t = q0 + r, s = k0 + c;
      float score = kNegInf;
      if (t < seq && s < seq && (kind == BlockKind::full || mask.allowed(t, s)))
        score = scale * dot_rows<D>(qs + r * D, ks + c * (D + 1));
      ps[r * (kBc + 1) + c] = score;
    }
    __syncthreads();
    // Online softmax update, one warp per row (8 rows per warp).
    for (int r = warp * 8; r < warp * 8 + 8; ++r) {
      const float x0 = ps[r * (kBc + 1) + lane], x1 = ps[r * (kBc + 1) + lane + 32];
      const float m_old = ms[r];
      const float m_new = fmaxf(m_old, warp_max(fmaxf(x0, x1)));
      float p0 = 0.0f, p1 = 0.0f, alpha = 1.0f;
      if (m_new != kNegInf) {  // else nothing seen yet in this row: keep zeros
        p0 = expf(x0 - m_new);
        p1 = expf(x1 - m_new);
        alpha = expf(m_old - m_new);  // 0 when m_old = -inf
      }
      const float rs = warp_sum(p0 + p1);
      ps[r * (kBc + 1) + lane] = p0;
      ps[r * (kBc + 1) + lane + 32] = p1;
      // Every lane has read ms[r] and ls[r] above; the shuffles do not order shared-memory
      // accesses between lanes (racecheck flagged it on the H200), so fence the warp first.
      __syncwarp();
      if (lane == 0) {
        ms[r] = m_new;
        ls[r] = ls[r] * alpha + rs;
        as[r] = alpha;
      }
    }
    __syncthreads();
    // acc = acc * alpha + P V for this thread's row and columns.
    const float a = as[row];
#pragma unroll
    for (int j = 0; j < D / kTpr; ++j) acc[j] *= a;
    for (int c = 0; c < kBc; ++c) {
      const float p = ps[row * (kBc + 1) + c];
      const float* vr = vs + c * D + sub;
#pragma unroll
      for (int j = 0; j < D / kTpr; ++j) acc[j] += p * vr[kTpr * j];
    }
  }
  __syncthreads();
  const int64_t t = q0 + row;
  if (t < seq) {
    const float l = ls[row];
    T* o = out + base + t * stride + sub;
#pragma unroll
    for (int j = 0; j < D / kTpr; ++j) o[kTpr * j] = from_f32<T>(acc[j] / l);
    if (sub == 0) lse[bh * seq + t] = ms[row] + logf(l);
  }
}

// ---- backward --------------------------------------------------------------------------------
template <int D>
struct BwdSmem {
  static constexpr int k = 0;                      // kBc x (D+1)
  static constexpr int v = k + kBc * (D + 1);      // kBc x (D+1)
  static constexpr int q = v + kBc * (D + 1);      // kBr x D
  static constexpr int dout = q + kBr * D;         // kBr x D
  static constexpr int p = dout + kBr * D;         // kBr x (kBc+1)
  static constexpr int ds = p + kBr * (kBc + 1);   // kBr x (kBc+1)
  static constexpr int lse = ds + kBr * (kBc + 1); // kBr
  static constexpr int delta = lse + kBr;          // kBr
  static constexpr int floats = delta + kBr;
  static constexpr size_t bytes = floats * sizeof(float);
};

// P and dS of one (query tile, key tile) pair into ps (optional) and dss:
//   p = exp(scale q.k - lse_t), ds = p (dout_t . v_s - delta_t), 0 where masked/out of range.
// full: the mask's block() said every pair is visible (no per-element test).
template <int D, class Mask>
__device__ void probabilities(float* ps, float* dss, const float* qs, const float* dos, const float* ks,
                              const float* vs, const float* lses, const float* deltas, int64_t q0, int64_t k0,
                              int64_t seq, float scale, const Mask& mask, bool full) {
  for (int e = threadIdx.x; e < kBr * kBc; e += kThreads) {
    const int r = e / kBc, c = e % kBc;
    const int64_t t = q0 + r, s = k0 + c;
    float p = 0.0f, ds = 0.0f;
    if (t < seq && s < seq && (full || mask.allowed(t, s))) {
      p = expf(scale * dot_rows<D>(qs + r * D, ks + c * (D + 1)) - lses[r]);
      ds = p * (dot_rows<D>(dos + r * D, vs + c * (D + 1)) - deltas[r]);
    }
    if (ps) ps[r * (kBc + 1) + c] = p;
    dss[r * (kBc + 1) + c] = ds;
  }
}

// Loads a query tile's q, dout, lse and delta (zeros beyond seq).
template <int D, class T>
__device__ void load_query_tile(float* qs, float* dos, float* lses, float* deltas, const T* q, const T* dout,
                                const float* lse, const float* delta, int64_t base, int64_t stride, int64_t bh,
                                int64_t q0, int64_t seq) {
  load_tile<D>(qs, D, q, base, stride, q0, kBr, seq);
  load_tile<D>(dos, D, dout, base, stride, q0, kBr, seq);
  if (threadIdx.x < kBr) {
    const int64_t t = q0 + threadIdx.x;
    lses[threadIdx.x] = t < seq ? lse[bh * seq + t] : 0.0f;
    deltas[threadIdx.x] = t < seq ? delta[bh * seq + t] : 0.0f;
  }
}

// grid (ceil(T / kBc), B * H): block = one key tile of one head; dK, dV for its rows.
//   dv_s = sum_t p_ts dout_t,   dk_s = scale sum_t ds_ts q_t.
template <class T, int D, class Mask>
__global__ void __launch_bounds__(kThreads) attention_dkdv_kernel(T* dk, T* dv, const T* dout, const T* q,
                                                                  const T* k, const T* v, const float* lse,
                                                                  const float* delta, int64_t seq, int64_t heads,
                                                                  float scale, Mask mask_arg) {
  extern __shared__ float smem[];
  using L = BwdSmem<D>;
  float* ks = smem + L::k;
  float* vs = smem + L::v;
  float* qs = smem + L::q;
  float* dos = smem + L::dout;
  float* ps = smem + L::p;
  float* dss = smem + L::ds;
  float* lses = smem + L::lse;
  float* deltas = smem + L::delta;

  const int tid = threadIdx.x;
  const int64_t bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const Mask mask = mask_arg.at_batch(b);
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kBc;
  const int64_t stride = heads * D, base = (b * seq * heads + h) * D;
  load_tile<D>(ks, D + 1, k, base, stride, k0, kBc, seq);
  load_tile<D>(vs, D + 1, v, base, stride, k0, kBc, seq);

  const int col = tid / kTpr, sub = tid % kTpr;  // this thread's key row and column offset
  float dk_acc[D / kTpr], dv_acc[D / kTpr];
#pragma unroll
  for (int j = 0; j < D / kTpr; ++j) dk_acc[j] = dv_acc[j] = 0.0f;

  const int64_t k1 = k0 + kBc < seq ? k0 + kBc : seq;
  const int64_t q_end = mask.query_end(k1, seq);
  for (int64_t q0 = mask.query_begin(k0) / kBr * kBr; q0 < q_end; q0 += kBr) {
    const BlockKind kind = mask.block(q0, q0 + kBr < seq ? q0 + kBr : seq, k0, k1);
    if (kind == BlockKind::masked) continue;  // wholly hidden: never loaded
    __syncthreads();  // the previous query tile is no longer read (and ks/vs are loaded)
    load_query_tile<D>(qs, dos, lses, deltas, q, dout, lse, delta, base, stride, bh, q0, seq);
    __syncthreads();
    probabilities<D>(ps, dss, qs, dos, ks, vs, lses, deltas, q0, k0, seq, scale, mask, kind == BlockKind::full);
    __syncthreads();
    for (int r = 0; r < kBr; ++r) {
      const float p = ps[r * (kBc + 1) + col];
      const float ds = dss[r * (kBc + 1) + col];
      const float* dor = dos + r * D + sub;
      const float* qr = qs + r * D + sub;
#pragma unroll
      for (int j = 0; j < D / kTpr; ++j) {
        dv_acc[j] += p * dor[kTpr * j];
        dk_acc[j] += ds * qr[kTpr * j];
      }
    }
  }
  const int64_t s = k0 + col;
  if (s < seq) {
    T* dkr = dk + base + s * stride + sub;
    T* dvr = dv + base + s * stride + sub;
#pragma unroll
    for (int j = 0; j < D / kTpr; ++j) {
      dkr[kTpr * j] = from_f32<T>(scale * dk_acc[j]);
      dvr[kTpr * j] = from_f32<T>(dv_acc[j]);
    }
  }
}

// grid (ceil(T / kBr), B * H): block = one query tile of one head; dq_t = scale sum_s ds_ts k_s.
template <class T, int D, class Mask>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(T* dq, const T* dout, const T* q, const T* k,
                                                                const T* v, const float* lse, const float* delta,
                                                                int64_t seq, int64_t heads, float scale,
                                                                Mask mask_arg) {
  extern __shared__ float smem[];
  using L = BwdSmem<D>;  // the p tile is unused here
  float* ks = smem + L::k;
  float* vs = smem + L::v;
  float* qs = smem + L::q;
  float* dos = smem + L::dout;
  float* dss = smem + L::ds;
  float* lses = smem + L::lse;
  float* deltas = smem + L::delta;

  const int tid = threadIdx.x;
  const int64_t bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const Mask mask = mask_arg.at_batch(b);
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kBr;
  const int64_t q1 = q0 + kBr < seq ? q0 + kBr : seq;
  const int64_t stride = heads * D, base = (b * seq * heads + h) * D;
  load_query_tile<D>(qs, dos, lses, deltas, q, dout, lse, delta, base, stride, bh, q0, seq);

  const int row = tid / kTpr, sub = tid % kTpr;
  float acc[D / kTpr];
#pragma unroll
  for (int j = 0; j < D / kTpr; ++j) acc[j] = 0.0f;

  const int64_t k_end = mask.key_end(q1) < seq ? mask.key_end(q1) : seq;
  for (int64_t k0 = mask.key_begin(q0) / kBc * kBc; k0 < k_end; k0 += kBc) {
    const int64_t k1 = k0 + kBc < seq ? k0 + kBc : seq;
    const BlockKind kind = mask.block(q0, q1, k0, k1);
    if (kind == BlockKind::masked) continue;  // wholly hidden: never loaded
    __syncthreads();
    load_tile<D>(ks, D + 1, k, base, stride, k0, kBc, seq);
    load_tile<D>(vs, D + 1, v, base, stride, k0, kBc, seq);
    __syncthreads();
    probabilities<D>(nullptr, dss, qs, dos, ks, vs, lses, deltas, q0, k0, seq, scale, mask,
                     kind == BlockKind::full);
    __syncthreads();
    for (int c = 0; c < kBc; ++c) {
      const float ds = dss[row * (kBc + 1) + c];
      const float* kr = ks + c * (D + 1) + sub;
#pragma unroll
      for (int j = 0; j < D / kTpr; ++j) acc[j] += ds * kr[kTpr * j];
    }
  }
  const int64_t t = q0 + row;
  if (t < seq) {
    T* o = dq + base + t * stride + sub;
#pragma unroll
    for (int j = 0; j < D / kTpr; ++j) o[kTpr * j] = from_f32<T>(scale * acc[j]);
  }
}

dim3 tile_grid(int64_t seq, int64_t batch_heads) { return attention_tile_grid(seq, batch_heads, kBr); }

}  // namespace

namespace {

template <class Mask>
void forward_simt(DType act, void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                  int64_t seq, int64_t heads, int64_t head_dim, float scale, const Mask& mask) {
  with_act(act, "attention_forward", [&]<class T>(std::type_identity<T>) {
    with_head_dim(head_dim, "attention_forward", [&]<int D>(std::integral_constant<int, D>) {
      auto kernel = attention_forward_kernel<T, D, Mask>;
      allow_smem(kernel, FwdSmem<D>::bytes);
      kernel<<<tile_grid(seq, batch * heads), kThreads, FwdSmem<D>::bytes, stream()>>>(
          static_cast<T*>(out), lse, static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), seq,
          heads, scale, mask);
      CUDA_CHECK_LAUNCH();
    });
  });
}

template <class Mask>
void backward_simt(DType act, void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                   const void* v, const void* out, const float* lse, int64_t batch, int64_t seq, int64_t heads,
                   int64_t head_dim, float scale, const Mask& mask) {
  const int64_t rows = batch * seq * heads;
  with_act(act, "attention_backward", [&]<class T>(std::type_identity<T>) {
    with_head_dim(head_dim, "attention_backward", [&]<int D>(std::integral_constant<int, D>) {
      float* delta = static_cast<float*>(workspace(static_cast<size_t>(rows) * sizeof(float)));
      launch_attention_delta<T>(delta, static_cast<const T*>(dout), static_cast<const T*>(out), rows, seq, heads,
                                head_dim);
      const dim3 grid = tile_grid(seq, batch * heads);
      auto dkdv = attention_dkdv_kernel<T, D, Mask>;
      allow_smem(dkdv, BwdSmem<D>::bytes);
      dkdv<<<grid, kThreads, BwdSmem<D>::bytes, stream()>>>(
          static_cast<T*>(dk), static_cast<T*>(dv), static_cast<const T*>(dout), static_cast<const T*>(q),
          static_cast<const T*>(k), static_cast<const T*>(v), lse, delta, seq, heads, scale, mask);
      CUDA_CHECK_LAUNCH();
      auto dqk = attention_dq_kernel<T, D, Mask>;
      allow_smem(dqk, BwdSmem<D>::bytes);
      dqk<<<grid, kThreads, BwdSmem<D>::bytes, stream()>>>(
          static_cast<T*>(dq), static_cast<const T*>(dout), static_cast<const T*>(q), static_cast<const T*>(k),
          static_cast<const T*>(v), lse, delta, seq, heads, scale, mask);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace

// A mask (record #26's) takes the same route as the causal mask: flash, tensor-core or
// CUDA-core kernels by attention_kernel() and the pointers' alignment; each is the kernel
// instantiated with DocWindowMask instead of CausalMask.
void attention_forward(DType act, void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                       int64_t seq, int64_t heads, int64_t head_dim, float scale, const DocWindowMask* mask) {
  if (batch * seq * heads <= 0) return;
  if (use_flash_attention(act, {out, q, k, v})) {
    if (mask) attention_flash_forward_masked(out, lse, q, k, v, batch, seq, heads, head_dim, scale, *mask);
    else attention_flash_forward(out, lse, q, k, v, batch, seq, heads, head_dim, scale);
    return;
  }
  if (use_tensor_core_attention(act, {out, q, k, v})) {
    if (mask) attention_forward_tc_masked(out, lse, q, k, v, batch, seq, heads, head_dim, scale, *mask);
    else attention_forward_tc(out, lse, q, k, v, batch, seq, heads, head_dim, scale);
    return;
  }
  if (mask) forward_simt(act, out, lse, q, k, v, batch, seq, heads, head_dim, scale, *mask);
  else forward_simt(act, out, lse, q, k, v, batch, seq, heads, head_dim, scale, CausalMask{});
}

void attention_backward(DType act, void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                        const void* v, const void* out, const float* lse, int64_t batch, int64_t seq, int64_t heads,
                        int64_t head_dim, float scale, const DocWindowMask* mask) {
  const int64_t rows = batch * seq * heads;
  if (rows <= 0) return;
  if (use_flash_attention(act, {dq, dk, dv, dout, q, k, v, out})) {
    if (mask)
      attention_flash_backward_masked(dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale, *mask);
    else attention_flash_backward(dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale);
    return;
  }
  if (use_tensor_core_attention(act, {dq, dk, dv, dout, q, k, v, out})) {
    if (mask)
      attention_backward_tc_masked(dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale, *mask);
    else attention_backward_tc(dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale);
    return;
  }
  if (mask) backward_simt(act, dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale, *mask);
  else backward_simt(act, dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale, CausalMask{});
}

}  // namespace speedrun::cuda
