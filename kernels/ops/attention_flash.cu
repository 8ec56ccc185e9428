// FlashAttention-2-class bf16 attention for sm_90, written from the algorithm of
// Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning"
// (2023), Algorithms 1 (forward) and 2 (backward), and the PTX ISA's descriptions of
// mma.sync.m16n8k16, ldmatrix and cp.async. Entry points and tensor contract:
// kernels/ops/attention_flash.h (the same as kernels/attention_tc.cu's, so dispatch can pick
// either). NOT YET RUN ON A GPU: compiled for sm_90 only; dev/cuda/attention_flash.cu is the
// driver that validates it against an fp32/fp64 reference and times it.
//
// ---- What differs from kernels/attention_tc.cu ------------------------------------------
//  * Shared tiles are filled with cp.async (16-byte, zero-filling rows at or beyond T), and
//    the K/V tiles (forward) and Q/dO tiles (backward) are double-buffered: the copy of tile
//    i+1 is in flight while tile i is multiplied.
//  * Fragments come from shared memory with ldmatrix.x4 (four 8x8 b16 matrices per
//    instruction), .trans where the product's k runs along the stored rows (V in P V, dO in
//    P^T dO, Q in dS^T Q, K and dS^T in dS K): no transposed copies in shared memory.
//  * Softmax in the log2 domain: x = s * scale * log2(e), p = ex2.approx(x - m); the scale is
//    folded into that one multiplier. lse is converted back to the natural log at the end.
//  * The row sum l is kept per thread (each of the 4 lanes of a quad sums its own columns;
//    alpha is the same for the quad) and reduced once at the end.
//  * Backward in one main kernel per (b, h, key tile): S^T and dP^T are computed once per
//    (query tile, key tile) block and feed dV, dK and dQ; dQ goes to an fp32 accumulator with
//    atomicAdd(float2) (sm_90), converted to bf16 by a small kernel. D = rowsum(dO * O) is a
//    preprocessing kernel that also zeroes the accumulator.
//  * The mask is a template parameter (a small struct, below). The kernels never assume
//    causality: they iterate the tile range the mask gives, ask it for each (query tile, key
//    tile) block whether it is fully masked (skipped, not even loaded), fully visible (no
//    per-element test) or partial (per-element allowed(t, s)), and handle rows that see no
//    key at all. Record #26's mask (same document, sliding window of blocks) is
//    DocWindowMask (kernels/ops/attention_mask.h), the same functions plus at_batch(b) (its
//    document numbers are per sequence); attention_flash_*_masked instantiate it. Not yet
//    run on a GPU either.
//
// ---- Layout and conventions (identical to kernels/attention_tc.cu) ------------------------
// q, k, v, out, dout, dq, dk, dv are (B, T, H, D) bf16: row t of head (b, h) starts at
// base + t * stride, base = (b T H + h) D, stride = H D. lse and delta are (B, H, T) fp32 at
// (b H + h) T + t. lse is the NATURAL log: lse = m + log(l) of the scaled scores, as the CPU
// (src/ops/cpu/attention.h) and the other CUDA kernels write it; internally m is kept in
// log2 units (m2 = m log2 e), so lse = (m2 + log2 l) ln 2 and the backward recomputes
// p = exp2(s scale log2e - lse log2e).
//
// ---- mma.m16n8k16 fragments and the ldmatrix addresses ------------------------------------
// lane = 4 g + t (g 0..7, t 0..3). A (16 x 16, row-major): a0 = A[g][2t..2t+1], a1 =
// A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]. B (16(k) x 8(n)): b0 = B[2t..2t+1][g],
// b1 = B[2t+8..][g]. C (16 x 8 fp32): c0, c1 = C[g][2t, 2t+1], c2, c3 = C[g+8][2t, 2t+1].
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of matrix i; register i of lane l holds
// row l/4, columns 2(l%4), 2(l%4)+1 of matrix i (of its transpose with .trans). Hence:
//  * A from a row-major (m, k) tile: lane l points at row (l & 15), column 8 (l >> 4):
//    matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15)
//    = a0, a1, a2, a3.                                                     [ldsm_a_addr]
//  * B for two n-blocks from a row-major (n, k) tile: row (l & 7) + 8 (l >> 4), column
//    8 ((l >> 3) & 1): matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
//    (n 8-15, k 8-15) = b0, b1 of n-block 0, b0, b1 of n-block 1.           [ldsm_b_addr]
//  * B for two n-blocks from a row-major (k, n) tile with .trans: row (l & 7) + 8 ((l >> 3)
//    & 1), column 8 (l >> 4): matrix (k 0-7, n 0-7) transposed gives lane l the elements
//    (k 2t, 2t+1; n g) = b0; then b1, and b0, b1 of the next n-block.       [ldsm_bt_addr]
//  * A from a row-major (k, m) tile with .trans: row (l & 7) + 8 (l >> 4), column
//    8 ((l >> 3) & 1): matrices (k 0-7, m 0-7)^T = a0, (k 0-7, m 8-15)^T = a1,
//    (k 8-15, m 0-7)^T = a2, (k 8-15, m 8-15)^T = a3.                       [ldsm_at_addr]
// A C fragment of a 16 x 16k tile is the A fragment of the next product (P V, P^T dO,
// dS^T Q): k-step i takes n-blocks 2i (a0, a1) and 2i + 1 (a2, a3), rounded to bf16.
// Shared rows are padded by 8 bf16 (16 bytes): pitches 136 (D = 128) and 72 (D = 64, and
// the dS^T tile) elements are 4 (mod 32) words, so the 8 row addresses of one ldmatrix
// matrix, and the dS^T stores of lane (g, t) at word 36 g + t + 4 j, hit distinct banks.
// Every row start is 16-byte aligned (pitches are multiples of 8 elements), as cp.async.cg
// and ldmatrix need.
//
// ---- Forward (Algorithm 1) -----------------------------------------------------------------
// grid (ceil(T / BM), B H), 128 threads = 4 warps, BM = 64 WM query rows per block: warp w
// owns rows 16 WM w .. 16 WM (w + 1) - 1, as WM m16 tiles (WM = 2 for D = 128 and 64). Key
// tiles of BN = 64. blockIdx.x is reversed (query tile = gridDim.x - 1 - blockIdx.x) so the
// longest causal rows start first. Shared: Q (BM x D), K and V (2 stages x BN x D), bf16,
// padded: 104,448 bytes for D = 128 (2 blocks per SM), 55,296 for D = 64.
// Per key tile: S = Q K^T (fp32 C fragments), x = S scale log2e (-inf where masked), per row
// m_new = max(m, rowmax x) (quad shuffles), m_use = m_new or 0 when m_new = -inf (no key seen
// yet: avoids -inf - -inf), alpha = exp2(m - m_use), p = exp2(x - m_use), l = alpha l +
// rowsum p (per thread), O = alpha O + P V. End: l summed over the quad, out = O / l
// (0 where l = 0), lse = (m + log2 l) ln 2 (-inf where l = 0), both only for rows < T.
//
// ---- Backward (Algorithm 2, with dQ by atomics) ------------------------------------------
// 1. delta kernel: delta[b, h, t] = sum_d dO . O (fp32 from bf16), one warp per (b, t, h)
//    row; it also zeroes that row of the fp32 dQ accumulator (same (B, T, H, D) layout).
// 2. main kernel: grid (ceil(T / BNB), B H), 32 NW threads, BNB = 16 NW keys per block
//    (NW = 8: 128 keys), query tiles of BR = 64. Warp w owns key rows 16 w .. 16 w + 15 and
//    computes, transposed (keys as rows), for each query tile the mask does not skip:
//      S^T = K Q^T, dP^T = V dO^T (one pass each: S is computed once per block and reused),
//      P^T = exp2(S^T scale log2e - lse log2e), dS^T = P^T (dP^T - delta),
//      dV += P^T dO, dK += dS^T Q (A operands straight from the C fragments),
//      dS^T -> shared (bf16), barrier, then dQ_tile = dS K split over the 8 warps (rows
//      16 (w & 3), columns D/2 (w >> 2)) and atomicAdd(float2) into the accumulator.
//    End: dk = scale dK, dv = dV (bf16) for key rows < T.
//    Shared for D = 128: K, V (BNB x D), Q, dO (2 stages x BR x D), dS^T (BNB x BR), lse and
//    delta (2 stages x BR): 158,720 bytes (1 block of 8 warps per SM); 93,184 for D = 64.
// 3. convert kernel: dq = bf16(scale * accumulator).
// Barriers per query-tile iteration: (a) after cp.async.wait_group: tile i landed for every
// thread; (b) after the dS^T stores: dS^T visible for dQ; Q/dO of tile i are no longer read
// (dQ reads only K and dS^T), so the prefetch of tile i+2 into tile i's stage, issued at the
// top of iteration i+1, is safe; and dS^T of iteration i+1 is written after barrier (a) of
// i+1, which follows every warp's dQ reads of iteration i.
//
// ---- Index walk-throughs ---------------------------------------------------------------------
// T not a multiple of the tiles (T = 1000, D = 128; forward BM = 128, BN = 64): the last
// query tile is q0 = 896 (grid.x = 8) with rows 896..1023; cp.async zero-fills rows
// 1000..1023 of Q. key_end(min(q0 + BM, T)) = 1000, so key tiles k0 = 0, 64, ..., 960; tile
// 960 covers keys 960..1023, of which 1000..1023 are zero-filled and masked -inf because
// k0 + BN > T forces the per-element path (s < T && allowed). Rows 1000..1023 compute
// harmless finite values (zero q: every score 0) and are never stored (row < T tests on the
// out and lse stores). Backward, BNB = 128: key tile k0 = 896 (keys 896..1023, rows
// 1000..1023 of K and V zero-filled, their dK/dV never stored; they are masked so P = 0 and
// they add nothing to dQ); query tiles 896 and 960, the latter with q0 + BR > T: the
// per-element path masks t >= T, lse/delta of those rows are zero-filled and unused, their
// dQ rows are not added. T < one tile (T = 77) is the same with a single tile each way; T = 1
// too (the cp.async source of a zero-filled row is clamped to row 0, which exists).
// Causal diagonal (forward, BM = 128 over BN = 64 keys): for query tile q0 (rows q0..q0+127)
// the causal mask says: key tile k0 < q0 -> k0 + 63 <= q0 - 1 < q0 = first row: fully
// visible, no test; k0 = q0 and k0 = q0 + 64 -> partial: element (row t, key s) kept iff
// s <= t, so rows q0..q0+63 see nothing of tile q0 + 64 (all -inf: rowmax -inf, m keeps
// its earlier finite value since tile 0 always gave key 0; p = exp2(-inf) = 0); tiles from
// q0 + 128 on are beyond key_end and never visited. Backward (BNB = 128 keys, BR = 64
// queries): key tile k0 visits query tiles from query_begin(k0) = k0: q0 = k0 and k0 + 64 are
// partial (s <= t tested), from k0 + 128 on fully visible.
// head_dim 64: the same code with D = 64 (pitch 72, 4 k-steps in Q K^T, 4 pairs of n-blocks
// in P V); the dQ warps' column halves are 32 wide (2 n-block pairs); nothing else changes.
// Fragment element (j, e) of a C tile is (row g + 8 (e >> 1), column 8 j + 2 t + (e & 1)).
//
// ---- Precision ------------------------------------------------------------------------------
// bf16 operands, fp32 accumulation (mma), fp32 softmax statistics, lse, delta and dQ
// accumulator; P and dS rounded to bf16 to enter the tensor cores (as FlashAttention does);
// ex2.approx.ftz (relative error ~2^-22) instead of expf; each output rounded to bf16 once.
//
// Includes to update when kernels/ moves (kernels/ops, kernels/runtime, ...):
// "kernels/runtime/common.cuh", "kernels/runtime/context.cuh" (and cuda_check.cuh through common.cuh).
#include <climits>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/attention_flash.h"
#include "kernels/ops/attention_mask.h"

namespace speedrun::cuda {
namespace flash {

// ---- masks ---------------------------------------------------------------------------------
// What the kernels ask a mask. Positions are in [0, T); ranges are half-open; the ranges
// may be supersets (blocks inside them are still classified), never subsets.
// BlockKind and record #26's DocWindowMask (document, sliding window): kernels/ops/attention_mask.h.

// Causal: query t sees keys s <= t.
struct CausalMask {
  __host__ __device__ CausalMask at_batch(int64_t /*b*/) const { return *this; }
  // Keys that queries [q0, q1) may see: [key_begin, key_end).
  __host__ __device__ int key_begin(int /*q0*/) const { return 0; }
  __host__ __device__ int key_end(int q1) const { return q1; }
  // Queries that may see keys [k0, k1): [query_begin, query_end) (clamped to T by the caller).
  __host__ __device__ int query_begin(int k0) const { return k0; }
  __host__ __device__ int query_end(int /*k1*/, int seq) const { return seq; }
  // The block queries [q0, q1) x keys [k0, k1) (non-empty, within [0, T)).
  __device__ BlockKind block(int q0, int q1, int k0, int k1) const {
    if (k0 > q1 - 1) return BlockKind::masked;  // the first key is after the last query
    if (k1 - 1 <= q0) return BlockKind::full;   // the last key is at or before the first query
    return BlockKind::partial;
  }
  __device__ bool allowed(int t, int s) const { return s <= t; }
};

// ---- PTX wrappers ------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; zero-fills the destination when !valid (the
// source is then not read, but must still be a valid address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a b (m16n8k16, bf16 x bf16 -> fp32).
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x, ex2.approx.ftz: 2^-inf = +0, relative error about 2^-22.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Two floats as bf16x2 (round to nearest even), lo in the lower 16 bits.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

// ldmatrix lane addresses (see the header): row and column of lane l's pointer inside the
// 16 x 16 (x4) block whose top-left is (r0, c0) of a tile with row pitch `pitch`.
__device__ __forceinline__ const bf16* ldsm_a_addr(const bf16* tile, int pitch, int r0, int c0, int lane) {
  return tile + (r0 + (lane & 15)) * pitch + c0 + ((lane >> 4) << 3);
}
__device__ __forceinline__ const bf16* ldsm_b_addr(const bf16* tile, int pitch, int r0, int c0, int lane) {
  return tile + (r0 + (lane & 7) + ((lane >> 4) << 3)) * pitch + c0 + (((lane >> 3) & 1) << 3);
}
__device__ __forceinline__ const bf16* ldsm_bt_addr(const bf16* tile, int pitch, int r0, int c0, int lane) {
  return tile + (r0 + (lane & 7) + (((lane >> 3) & 1) << 3)) * pitch + c0 + ((lane >> 4) << 3);
}
// Same lane pattern as ldsm_b_addr (the A-from-(k, m) case of the header).
__device__ __forceinline__ const bf16* ldsm_at_addr(const bf16* tile, int pitch, int r0, int c0, int lane) {
  return ldsm_b_addr(tile, pitch, r0, c0, lane);
}

constexpr int kPad = 8;  // bf16 elements of padding per shared row

// Rows [row0, row0 + ROWS) of one head (row t at g + t * stride) into a ROWS x D shared tile
// (pitch D + kPad) with cp.async; rows at or beyond seq are zero-filled. Not committed.
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_async(bf16* tile, const bf16* g, int64_t stride, int row0, int seq) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert((ROWS * kChunks) % THREADS == 0, "every thread issues the same number of copies");
#pragma unroll
  for (int i = 0; i < ROWS * kChunks / THREADS; ++i) {
    const int e = static_cast<int>(threadIdx.x) + i * THREADS;
    const int r = e / kChunks, c = (e % kChunks) * 8;
    const int t = row0 + r;
    const bool valid = t < seq;
    cp_async16(tile + r * (D + kPad) + c, g + static_cast<int64_t>(valid ? t : 0) * stride + c, valid);
  }
}

// Start of the next tile, from `from` (a multiple of `tile`) on, below `end`, whose block
// with the query or key range [other0, other1) the mask does not skip; `end` when none.
template <bool kKeysVary, class Mask>
__device__ __forceinline__ int next_tile(const Mask& mask, int from, int end, int tile, int other0, int other1,
                                         int seq) {
  for (int x = from; x < end; x += tile) {
    const int x1 = min(x + tile, seq);
    const BlockKind kind = kKeysVary ? mask.block(other0, other1, x, x1) : mask.block(x, x1, other0, other1);
    if (kind != BlockKind::masked) return x;
  }
  return end;
}

// ---- forward ---------------------------------------------------------------------------------
constexpr int kFwdThreads = 128;
constexpr int kFwdBN = 64;

template <int D, int WM>
struct FwdSmem {
  static constexpr int BM = 64 * WM;
  static constexpr int P = D + kPad;
  static constexpr int q = 0;
  static constexpr int k = q + BM * P;      // 2 stages of kFwdBN x P
  static constexpr int v = k + 2 * kFwdBN * P;  // 2 stages of kFwdBN x P
  static constexpr int elems = v + 2 * kFwdBN * P;
  static constexpr size_t bytes = static_cast<size_t>(elems) * sizeof(bf16);
};

struct FwdParams {
  bf16* out;
  float* lse;
  const bf16* q;
  const bf16* k;
  const bf16* v;
  int seq;
  int heads;
  float scale_log2;  // scale * log2(e)
};

template <int D, int WM, class Mask>
__global__ void __launch_bounds__(kFwdThreads, 2) flash_forward_kernel(const FwdParams p, const Mask mask_arg) {
  using L = FwdSmem<D, WM>;
  constexpr int BM = L::BM, BN = kFwdBN, P = L::P;
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  bf16* smem = reinterpret_cast<bf16*>(smem_bytes);
  bf16* qs = smem + L::q;
  bf16* ks = smem + L::k;
  bf16* vs = smem + L::v;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int seq = p.seq;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const Mask mask = mask_arg.at_batch(b);
  const int q0 = (static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x)) * BM;
  const int q1 = min(q0 + BM, seq);
  const int64_t stride = static_cast<int64_t>(p.heads) * D, base = (b * seq * p.heads + h) * D;
  const int r0 = warp * 16 * WM;  // this warp's first row in the tile

  const int k_lo = mask.key_begin(q0) / BN * BN;
  const int k_end = min(mask.key_end(q1), seq);
  int k0 = next_tile<true>(mask, k_lo, k_end, BN, q0, q1, seq);

  load_tile_async<D, BM, kFwdThreads>(qs, p.q + base, stride, q0, seq);
  if (k0 < k_end) {
    load_tile_async<D, BN, kFwdThreads>(ks, p.k + base, stride, k0, seq);
    load_tile_async<D, BN, kFwdThreads>(vs, p.v + base, stride, k0, seq);
  }
  cp_async_commit();

  float acc[WM][D / 8][4];
  float m_run[WM][2], l_run[WM][2];
#pragma unroll
  for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) acc[mi][j][0] = acc[mi][j][1] = acc[mi][j][2] = acc[mi][j][3] = 0.0f;
    m_run[mi][0] = m_run[mi][1] = kNegInf;
    l_run[mi][0] = l_run[mi][1] = 0.0f;
  }

  for (int stage = 0; k0 < k_end; stage ^= 1) {
    // Prefetch the next visited tile into the other stage (read last in the previous
    // iteration, which ended with a barrier).
    const int k_next = next_tile<true>(mask, k0 + BN, k_end, BN, q0, q1, seq);
    if (k_next < k_end) {
      load_tile_async<D, BN, kFwdThreads>(ks + (stage ^ 1) * BN * P, p.k + base, stride, k_next, seq);
      load_tile_async<D, BN, kFwdThreads>(vs + (stage ^ 1) * BN * P, p.v + base, stride, k_next, seq);
    }
    cp_async_commit();
    cp_async_wait<1>();  // everything but the prefetch has landed (for this thread)
    __syncthreads();     // ... and for every thread
    const bf16* kt = ks + stage * BN * P;
    const bf16* vt = vs + stage * BN * P;

    // S = Q K^T: WM x (16 x BN) per warp.
    float s[WM][BN / 8][4];
#pragma unroll
    for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) s[mi][j][0] = s[mi][j][1] = s[mi][j][2] = s[mi][j][3] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < D; kk += 16) {
      uint32_t a[WM][4];
#pragma unroll
      for (int mi = 0; mi < WM; ++mi) ldsm_x4(a[mi], ldsm_a_addr(qs, P, r0 + 16 * mi, kk, lane));
#pragma unroll
      for (int nj = 0; nj < BN / 16; ++nj) {
        uint32_t bfr[4];
        ldsm_x4(bfr, ldsm_b_addr(kt, P, 16 * nj, kk, lane));
#pragma unroll
        for (int mi = 0; mi < WM; ++mi) {
          mma(s[mi][2 * nj], a[mi], bfr[0], bfr[1]);
          mma(s[mi][2 * nj + 1], a[mi], bfr[2], bfr[3]);
        }
      }
    }

    // Scale into log2 units, then -inf where the block is not fully visible or runs past T
    // (after the scaling, so that any sign of scale keeps masked entries at -inf).
#pragma unroll
    for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mi][j][e] *= p.scale_log2;
      }
    }
    const int k1 = min(k0 + BN, seq);
    if (k0 + BN > seq || mask.block(q0, q1, k0, k1) != BlockKind::full) {
      const int t0 = q0 + r0 + g, key0 = k0 + 2 * tq;
#pragma unroll
      for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int t = t0 + 16 * mi + 8 * (e >> 1), key = key0 + 8 * j + (e & 1);
            // t < seq first: rows past T exist in the last tile, and a mask may read per-row
            // data (DocWindowMask's document numbers) that ends at T.
            if (!(t < seq && key < seq && mask.allowed(t, key))) s[mi][j][e] = kNegInf;
          }
        }
      }
    }
    // Online softmax per row (mi, hr).
#pragma unroll
    for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        float mx = kNegInf;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) mx = fmaxf(mx, fmaxf(s[mi][j][2 * hr], s[mi][j][2 * hr + 1]));
        const float m_new = fmaxf(m_run[mi][hr], quad_max(mx));
        const float m_use = m_new == kNegInf ? 0.0f : m_new;
        const float alpha = exp2_approx(m_run[mi][hr] - m_use);  // 0 while m_run = -inf
        float rs = 0.0f;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const float p0 = exp2_approx(s[mi][j][2 * hr] - m_use), p1 = exp2_approx(s[mi][j][2 * hr + 1] - m_use);
          s[mi][j][2 * hr] = p0;
          s[mi][j][2 * hr + 1] = p1;
          rs += p0 + p1;
        }
        l_run[mi][hr] = l_run[mi][hr] * alpha + rs;
        m_run[mi][hr] = m_new;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
          acc[mi][j][2 * hr] *= alpha;
          acc[mi][j][2 * hr + 1] *= alpha;
        }
      }
    }

    // O += P V: P from the C fragments (bf16), V^T fragments by ldmatrix.trans.
#pragma unroll
    for (int i = 0; i < BN / 16; ++i) {
      uint32_t a[WM][4];
#pragma unroll
      for (int mi = 0; mi < WM; ++mi) {
        a[mi][0] = pack_bf16(s[mi][2 * i][0], s[mi][2 * i][1]);
        a[mi][1] = pack_bf16(s[mi][2 * i][2], s[mi][2 * i][3]);
        a[mi][2] = pack_bf16(s[mi][2 * i + 1][0], s[mi][2 * i + 1][1]);
        a[mi][3] = pack_bf16(s[mi][2 * i + 1][2], s[mi][2 * i + 1][3]);
      }
#pragma unroll
      for (int nd = 0; nd < D / 16; ++nd) {
        uint32_t bfr[4];
        ldsm_x4_t(bfr, ldsm_bt_addr(vt, P, 16 * i, 16 * nd, lane));
#pragma unroll
        for (int mi = 0; mi < WM; ++mi) {
          mma(acc[mi][2 * nd], a[mi], bfr[0], bfr[1]);
          mma(acc[mi][2 * nd + 1], a[mi], bfr[2], bfr[3]);
        }
      }
    }
    __syncthreads();  // this stage's K and V are no longer read: the next prefetch may overwrite them
    k0 = k_next;
  }
  cp_async_wait<0>();  // nothing may be in flight when the block exits (an empty group at most)

  // out = O / l, lse = (m + log2 l) ln 2, for rows < T.
  constexpr float kLn2 = 0.693147180559945309f;
#pragma unroll
  for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int t = q0 + r0 + 16 * mi + g + 8 * hr;
      const float l = quad_sum(l_run[mi][hr]);
      if (t >= seq) continue;
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      bf16* o = p.out + base + static_cast<int64_t>(t) * stride + 2 * tq;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        *reinterpret_cast<uint32_t*>(o + 8 * j) = pack_bf16(acc[mi][j][2 * hr] * inv, acc[mi][j][2 * hr + 1] * inv);
      }
      if (tq == 0) p.lse[bh * seq + t] = l > 0.0f ? (m_run[mi][hr] + __log2f(l)) * kLn2 : kNegInf;
    }
  }
}

// ---- backward ----------------------------------------------------------------------------------
constexpr int kBwdWarps = 8;
constexpr int kBwdThreads = 32 * kBwdWarps;
constexpr int kBwdBN = 16 * kBwdWarps;  // keys per block: 16 per warp
constexpr int kBwdBR = 64;              // queries per inner tile
static_assert(kBwdBR == 64 && kBwdWarps % 4 == 0, "dQ = dS K splits 64 rows over 4 warps, D over the rest");

template <int D>
struct BwdSmem {
  static constexpr int P = D + kPad;
  static constexpr int PS = kBwdBR + kPad;              // dS^T pitch
  static constexpr int k = 0;                           // kBwdBN x P
  static constexpr int v = k + kBwdBN * P;              // kBwdBN x P
  static constexpr int q = v + kBwdBN * P;              // 2 stages of kBwdBR x P
  static constexpr int dout = q + 2 * kBwdBR * P;       // 2 stages of kBwdBR x P
  static constexpr int ds = dout + 2 * kBwdBR * P;      // kBwdBN x PS
  static constexpr int elems = ds + kBwdBN * PS;
  static constexpr size_t stats_offset = static_cast<size_t>(elems) * sizeof(bf16);  // lse[2][BR], delta[2][BR]
  static constexpr size_t bytes = stats_offset + 4 * kBwdBR * sizeof(float);
};

struct BwdParams {
  bf16* dk;
  bf16* dv;
  float* dq_accum;  // (B, T, H, D) fp32, zeroed by the delta kernel
  const bf16* dout;
  const bf16* q;
  const bf16* k;
  const bf16* v;
  const float* lse;
  const float* delta;
  int seq;
  int heads;
  float scale;       // for dk
  float scale_log2;  // scale * log2(e)
};

// delta[(b H + h) T + t] = sum_d dout . out; zeroes the row's dQ accumulator. One warp per
// row (b, t, h) of the (B, T, H, D) tensors, 8 rows per 256-thread block.
template <int D>
__global__ void __launch_bounds__(256) flash_delta_kernel(float* delta, float* dq_accum, const bf16* dout,
                                                          const bf16* out, int64_t rows, int seq, int heads) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * 8 + (threadIdx.x >> 5);
  if (row >= rows) return;
  float acc = 0.0f;
#pragma unroll
  for (int d = 2 * lane; d < D; d += 64) {
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dout + row * D + d));
    const float2 o = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(out + row * D + d));
    acc += a.x * o.x + a.y * o.y;
  }
  acc = warp_sum(acc);
#pragma unroll
  for (int d = 4 * lane; d < D; d += 128) *reinterpret_cast<float4*>(dq_accum + row * D + d) = make_float4(0, 0, 0, 0);
  if (lane == 0) {
    const int64_t h = row % heads, bt = row / heads, t = bt % seq, b = bt / seq;
    delta[(b * heads + h) * seq + t] = acc;
  }
}

// dq = bf16(scale * accum), 4 elements per thread and step (n is a multiple of 4: D is).
__global__ void __launch_bounds__(256) flash_dq_convert_kernel(bf16* dq, const float* accum, int64_t n, float scale) {
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 4; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x * 4) {
    const float4 a = *reinterpret_cast<const float4*>(accum + i);
    const uint2 packed = make_uint2(pack_bf16(scale * a.x, scale * a.y), pack_bf16(scale * a.z, scale * a.w));
    *reinterpret_cast<uint2*>(dq + i) = packed;
  }
}

// Q, dO rows [q0, q0 + BR) and their lse, delta into one stage (not committed).
template <int D>
__device__ __forceinline__ void load_query_tile(bf16* qs, bf16* dos, float* lses, float* deltas, const BwdParams& p,
                                                int64_t base, int64_t stride, int64_t bh, int q0) {
  load_tile_async<D, kBwdBR, kBwdThreads>(qs, p.q + base, stride, q0, p.seq);
  load_tile_async<D, kBwdBR, kBwdThreads>(dos, p.dout + base, stride, q0, p.seq);
  const int i = threadIdx.x;
  if (i < 2 * kBwdBR) {
    const int r = i % kBwdBR, t = q0 + r;
    const bool valid = t < p.seq;
    const float* src = (i < kBwdBR ? p.lse : p.delta) + bh * p.seq + (valid ? t : 0);
    cp_async4((i < kBwdBR ? lses : deltas) + r, src, valid);
  }
}

template <int D, class Mask>
__global__ void __launch_bounds__(kBwdThreads, 1) flash_backward_kernel(const BwdParams p, const Mask mask_arg) {
  using L = BwdSmem<D>;
  constexpr int BN = kBwdBN, BR = kBwdBR, P = L::P, PS = L::PS;
  constexpr int DC = D / (kBwdWarps / 4);  // dQ columns per warp
  constexpr float kLog2e = 1.4426950408889634f;
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  bf16* smem = reinterpret_cast<bf16*>(smem_bytes);
  bf16* ks = smem + L::k;
  bf16* vs = smem + L::v;
  bf16* qs = smem + L::q;
  bf16* dos = smem + L::dout;
  bf16* dss = smem + L::ds;
  float* lses = reinterpret_cast<float*>(smem_bytes + L::stats_offset);  // [2][BR]
  float* deltas = lses + 2 * BR;                                         // [2][BR]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int seq = p.seq;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const Mask mask = mask_arg.at_batch(b);
  const int k0 = static_cast<int>(blockIdx.x) * BN;
  const int k1 = min(k0 + BN, seq);
  const int64_t stride = static_cast<int64_t>(p.heads) * D, base = (b * seq * p.heads + h) * D;
  const int c0 = warp * 16;                        // this warp's first key row in the tile
  const int dq_r0 = (warp & 3) * 16, dq_c0 = (warp >> 2) * DC;  // this warp's part of dQ

  const int q_lo = mask.query_begin(k0) / BR * BR;
  const int q_end = min(mask.query_end(k1, seq), seq);
  int q0 = next_tile<false>(mask, q_lo, q_end, BR, k0, k1, seq);

  load_tile_async<D, BN, kBwdThreads>(ks, p.k + base, stride, k0, seq);
  load_tile_async<D, BN, kBwdThreads>(vs, p.v + base, stride, k0, seq);
  if (q0 < q_end) load_query_tile<D>(qs, dos, lses, deltas, p, base, stride, bh, q0);
  cp_async_commit();

  float dk_acc[D / 8][4], dv_acc[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    dk_acc[j][0] = dk_acc[j][1] = dk_acc[j][2] = dk_acc[j][3] = 0.0f;
    dv_acc[j][0] = dv_acc[j][1] = dv_acc[j][2] = dv_acc[j][3] = 0.0f;
  }

  for (int stage = 0; q0 < q_end; stage ^= 1) {
    const int q_next = next_tile<false>(mask, q0 + BR, q_end, BR, k0, k1, seq);
    if (q_next < q_end) {
      load_query_tile<D>(qs + (stage ^ 1) * BR * P, dos + (stage ^ 1) * BR * P, lses + (stage ^ 1) * BR,
                         deltas + (stage ^ 1) * BR, p, base, stride, bh, q_next);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // (a): tile q0 (and K, V) visible to all; every warp is past the previous dQ
    const bf16* qt = qs + stage * BR * P;
    const bf16* dot = dos + stage * BR * P;
    const float* lse_t = lses + stage * BR;
    const float* delta_t = deltas + stage * BR;

    // S^T = K Q^T and dP^T = V dO^T: 16 keys x BR queries per warp.
    float st[BR / 8][4], dpt[BR / 8][4];
#pragma unroll
    for (int j = 0; j < BR / 8; ++j) {
      st[j][0] = st[j][1] = st[j][2] = st[j][3] = 0.0f;
      dpt[j][0] = dpt[j][1] = dpt[j][2] = dpt[j][3] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < D; kk += 16) {
      uint32_t ak[4], av[4];
      ldsm_x4(ak, ldsm_a_addr(ks, P, c0, kk, lane));
      ldsm_x4(av, ldsm_a_addr(vs, P, c0, kk, lane));
#pragma unroll
      for (int nj = 0; nj < BR / 16; ++nj) {
        uint32_t bq[4], bo[4];
        ldsm_x4(bq, ldsm_b_addr(qt, P, 16 * nj, kk, lane));
        ldsm_x4(bo, ldsm_b_addr(dot, P, 16 * nj, kk, lane));
        mma(st[2 * nj], ak, bq[0], bq[1]);
        mma(st[2 * nj + 1], ak, bq[2], bq[3]);
        mma(dpt[2 * nj], av, bo[0], bo[1]);
        mma(dpt[2 * nj + 1], av, bo[2], bo[3]);
      }
    }

    // P^T and dS^T in place (P^T zero where masked or out of range).
#pragma unroll
    for (int j = 0; j < BR / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        st[j][e] = exp2_approx(st[j][e] * p.scale_log2 - lse_t[8 * j + 2 * tq + (e & 1)] * kLog2e);
      }
    }
    const int q1 = min(q0 + BR, seq);
    if (q0 + BR > seq || k0 + BN > seq || mask.block(q0, q1, k0, k1) != BlockKind::full) {
      const int t0 = q0 + 2 * tq, key0 = k0 + c0 + g;
#pragma unroll
      for (int j = 0; j < BR / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int t = t0 + 8 * j + (e & 1), key = key0 + 8 * (e >> 1);
          if (!(t < seq && key < seq && mask.allowed(t, key))) st[j][e] = 0.0f;
        }
      }
    }
#pragma unroll
    for (int j = 0; j < BR / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) dpt[j][e] = st[j][e] * (dpt[j][e] - delta_t[8 * j + 2 * tq + (e & 1)]);
    }

    // P^T and dS^T as bf16 A fragments (k-step i: n-blocks 2i, 2i + 1), which frees the
    // fp32 tiles; dS^T also -> shared, rows c0 + g (+8), columns 16 i + 2 t (+8).
    uint32_t ap[BR / 16][4], ads[BR / 16][4];
#pragma unroll
    for (int i = 0; i < BR / 16; ++i) {
#pragma unroll
      for (int x = 0; x < 2; ++x) {
        ap[i][2 * x] = pack_bf16(st[2 * i + x][0], st[2 * i + x][1]);
        ap[i][2 * x + 1] = pack_bf16(st[2 * i + x][2], st[2 * i + x][3]);
        ads[i][2 * x] = pack_bf16(dpt[2 * i + x][0], dpt[2 * i + x][1]);
        ads[i][2 * x + 1] = pack_bf16(dpt[2 * i + x][2], dpt[2 * i + x][3]);
      }
      // ads[i] = {(g, 2t), (g + 8, 2t), (g, 2t + 8), (g + 8, 2t + 8)} of this 16 x 16 block.
      bf16* d0 = dss + (c0 + g) * PS + 16 * i + 2 * tq;
      *reinterpret_cast<uint32_t*>(d0) = ads[i][0];
      *reinterpret_cast<uint32_t*>(d0 + 8 * PS) = ads[i][1];
      *reinterpret_cast<uint32_t*>(d0 + 8) = ads[i][2];
      *reinterpret_cast<uint32_t*>(d0 + 8 * PS + 8) = ads[i][3];
    }
    // dV += P^T dO, dK += dS^T Q (dO, Q fragments by ldmatrix.trans: k = query rows).
#pragma unroll
    for (int i = 0; i < BR / 16; ++i) {
#pragma unroll
      for (int nd = 0; nd < D / 16; ++nd) {
        uint32_t bo[4], bq[4];
        ldsm_x4_t(bo, ldsm_bt_addr(dot, P, 16 * i, 16 * nd, lane));
        ldsm_x4_t(bq, ldsm_bt_addr(qt, P, 16 * i, 16 * nd, lane));
        mma(dv_acc[2 * nd], ap[i], bo[0], bo[1]);
        mma(dv_acc[2 * nd + 1], ap[i], bo[2], bo[3]);
        mma(dk_acc[2 * nd], ads[i], bq[0], bq[1]);
        mma(dk_acc[2 * nd + 1], ads[i], bq[2], bq[3]);
      }
    }
    __syncthreads();  // (b): dS^T complete; Q, dO of this stage no longer read

    // dQ rows dq_r0.. +15, columns dq_c0 .. + DC of this tile = dS K (k = the BN keys).
    float dq[DC / 8][4];
#pragma unroll
    for (int j = 0; j < DC / 8; ++j) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < BN; kk += 16) {
      uint32_t a[4];
      ldsm_x4_t(a, ldsm_at_addr(dss, PS, kk, dq_r0, lane));
#pragma unroll
      for (int nd = 0; nd < DC / 16; ++nd) {
        uint32_t bk[4];
        ldsm_x4_t(bk, ldsm_bt_addr(ks, P, kk, dq_c0 + 16 * nd, lane));
        mma(dq[2 * nd], a, bk[0], bk[1]);
        mma(dq[2 * nd + 1], a, bk[2], bk[3]);
      }
    }
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int t = q0 + dq_r0 + g + 8 * hr;
      if (t >= seq) continue;
      float* dst = p.dq_accum + base + static_cast<int64_t>(t) * stride + dq_c0 + 2 * tq;
#pragma unroll
      for (int j = 0; j < DC / 8; ++j) {
        atomicAdd(reinterpret_cast<float2*>(dst + 8 * j), make_float2(dq[j][2 * hr], dq[j][2 * hr + 1]));
      }
    }
    q0 = q_next;
  }
  cp_async_wait<0>();

  // dk = scale dK, dv = dV for key rows < T.
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int key = k0 + c0 + g + 8 * hr;
    if (key >= seq) continue;
    const int64_t at = base + static_cast<int64_t>(key) * stride + 2 * tq;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      *reinterpret_cast<uint32_t*>(p.dk + at + 8 * j) =
          pack_bf16(p.scale * dk_acc[j][2 * hr], p.scale * dk_acc[j][2 * hr + 1]);
      *reinterpret_cast<uint32_t*>(p.dv + at + 8 * j) = pack_bf16(dv_acc[j][2 * hr], dv_acc[j][2 * hr + 1]);
    }
  }
}

// ---- host side -----------------------------------------------------------------------------------
constexpr float kLog2eHost = 1.4426950408889634f;
constexpr int kFwdWM = 2;  // forward query rows per block: 64 kFwdWM

void check_args(const char* op, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                std::initializer_list<const void*> pointers) {
  const std::string where = std::string("attention_flash_") + op + ": ";
  if (head_dim != 64 && head_dim != 128) {
    throw std::invalid_argument(where + "head_dim " + std::to_string(head_dim) + " is not 64 or 128");
  }
  if (batch * heads > 65535) throw std::invalid_argument(where + "batch * heads > 65535 (grid.y)");
  if (seq > INT_MAX) throw std::invalid_argument(where + "seq " + std::to_string(seq) + " > 2^31 - 1");
  for (const void* ptr : pointers) {
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) throw std::invalid_argument(where + "a pointer is not 16-byte aligned");
  }
}

template <class Fn>
void with_head_dim(int64_t head_dim, Fn&& fn) {
  if (head_dim == 64) fn(std::integral_constant<int, 64>{});
  else fn(std::integral_constant<int, 128>{});
}

template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

size_t delta_bytes(int64_t rows) { return (static_cast<size_t>(rows) * sizeof(float) + 255) / 256 * 256; }

template <class Mask>
void forward(void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch, int64_t seq,
             int64_t heads, int64_t head_dim, float scale, const Mask& mask) {
  check_args("forward", batch, seq, heads, head_dim, {out, q, k, v});
  if (batch * seq * heads <= 0) return;
  with_head_dim(head_dim, [&]<int D>(std::integral_constant<int, D>) {
    using L = FwdSmem<D, kFwdWM>;
    auto kernel = flash_forward_kernel<D, kFwdWM, Mask>;
    allow_smem(kernel, L::bytes);
    const FwdParams p{static_cast<bf16*>(out), lse, static_cast<const bf16*>(q), static_cast<const bf16*>(k),
                      static_cast<const bf16*>(v), static_cast<int>(seq), static_cast<int>(heads),
                      scale * kLog2eHost};
    const dim3 grid(static_cast<unsigned>(ceil_div(seq, L::BM)), static_cast<unsigned>(batch * heads));
    kernel<<<grid, kFwdThreads, L::bytes, stream()>>>(p, mask);
    CUDA_CHECK_LAUNCH();
  });
}

template <class Mask>
void backward(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v,
              const void* out, const float* lse, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
              float scale, const Mask& mask);

// The masked entry points' own checks: the mask's rows are this call's sequences.
void check_mask(const char* op, int64_t seq, const DocWindowMask& mask) {
  const std::string where = std::string("attention_flash_") + op + "_masked: ";
  if (mask.doc && mask.seq != seq)
    throw std::invalid_argument(where + "mask.seq " + std::to_string(mask.seq) + " is not seq " + std::to_string(seq));
  if (mask.window_blocks > 0 && mask.block_size <= 0)
    throw std::invalid_argument(where + "a window needs block_size > 0, got " + std::to_string(mask.block_size));
}

}  // namespace flash

void attention_flash_forward(void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                             int64_t seq, int64_t heads, int64_t head_dim, float scale) {
  flash::forward(out, lse, q, k, v, batch, seq, heads, head_dim, scale, flash::CausalMask{});
}

void attention_flash_forward_masked(void* out, float* lse, const void* q, const void* k, const void* v,
                                    int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                    const DocWindowMask& mask) {
  flash::check_mask("forward", seq, mask);
  flash::forward(out, lse, q, k, v, batch, seq, heads, head_dim, scale, mask);
}

size_t attention_flash_backward_workspace_bytes(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
  const int64_t rows = batch * seq * heads;
  return flash::delta_bytes(rows) + static_cast<size_t>(rows * head_dim) * sizeof(float);
}

namespace flash {

template <class Mask>
void backward(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v,
              const void* out, const float* lse, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
              float scale, const Mask& mask) {
  check_args("backward", batch, seq, heads, head_dim, {dq, dk, dv, dout, q, k, v, out});
  const int64_t rows = batch * seq * heads;
  if (rows <= 0) return;
  char* ws = static_cast<char*>(workspace(attention_flash_backward_workspace_bytes(batch, seq, heads, head_dim)));
  float* delta = reinterpret_cast<float*>(ws);
  float* dq_accum = reinterpret_cast<float*>(ws + delta_bytes(rows));
  with_head_dim(head_dim, [&]<int D>(std::integral_constant<int, D>) {
    flash_delta_kernel<D><<<static_cast<unsigned>(ceil_div(rows, 8)), 256, 0, stream()>>>(
        delta, dq_accum, static_cast<const bf16*>(dout), static_cast<const bf16*>(out), rows, static_cast<int>(seq),
        static_cast<int>(heads));
    CUDA_CHECK_LAUNCH();
    using L = BwdSmem<D>;
    auto kernel = flash_backward_kernel<D, Mask>;
    allow_smem(kernel, L::bytes);
    const BwdParams p{static_cast<bf16*>(dk), static_cast<bf16*>(dv), dq_accum, static_cast<const bf16*>(dout),
                      static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v), lse,
                      delta, static_cast<int>(seq), static_cast<int>(heads), scale, scale * kLog2eHost};
    const dim3 grid(static_cast<unsigned>(ceil_div(seq, kBwdBN)), static_cast<unsigned>(batch * heads));
    kernel<<<grid, kBwdThreads, L::bytes, stream()>>>(p, mask);
    CUDA_CHECK_LAUNCH();
    const int64_t n = rows * D;
    flash_dq_convert_kernel<<<grid_for(n / 4, 256), 256, 0, stream()>>>(static_cast<bf16*>(dq), dq_accum, n, scale);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace flash

void attention_flash_backward(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                              const void* v, const void* out, const float* lse, int64_t batch, int64_t seq,
                              int64_t heads, int64_t head_dim, float scale) {
  flash::backward(dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale, flash::CausalMask{});
}

void attention_flash_backward_masked(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                                     const void* v, const void* out, const float* lse, int64_t batch, int64_t seq,
                                     int64_t heads, int64_t head_dim, float scale, const DocWindowMask& mask) {
  flash::check_mask("backward", seq, mask);
  flash::backward(dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale, mask);
}

}  // namespace speedrun::cuda
