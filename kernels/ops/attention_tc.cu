// Causal softmax attention for bf16 on the tensor cores: the same semantics, layouts and
// tile loops as kernels/ops/attention.cu (read its header first), with the five tile products
// (S = Q K^T, O += P V; backward dP = dO V^T, dV += P^T dO, dK += dS^T Q, dQ += dS K) as
// warp-level mma.sync.m16n8k16 bf16 x bf16 -> fp32. Softmax statistics, lse, delta and the
// accumulators stay fp32; P and dS are rounded to bf16 to enter the tensor cores (as in
// FlashAttention), every output is rounded to bf16 once.
//
// Tiles: Br = Bc = 64, 128 threads = 4 warps; each warp owns 16 rows of the block's tile
// (query rows in the forward and dQ kernels, key rows in the dK/dV kernel) and all 64
// columns of the other side. Shared memory holds bf16 tiles, rows padded by 8 elements
// (16 bytes) so that the fragment loads below hit 32 different banks: a row pitch of
// 4 (mod 32) words puts lane (g, t) at bank 4 g + t.
//
// Fragments of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
// point type"); lane = 4 g + t (g = groupID 0..7, t = threadID_in_group 0..3); each .b32
// register holds two bf16, the lower column/k index in the lower 16 bits:
//   A (16 x 16, row-major):  a0 = A[g][2t, 2t+1]     a1 = A[g+8][2t, 2t+1]
//                            a2 = A[g][2t+8, 2t+9]   a3 = A[g+8][2t+8, 2t+9]
//   B (16 x 8, "col"):       b0 = B[2t, 2t+1][g]     b1 = B[2t+8, 2t+9][g]
//   C, D (16 x 8, fp32):     c0, c1 = C[g][2t, 2t+1] c2, c3 = C[g+8][2t, 2t+1]
// So an A operand is read from a shared matrix stored row-major in (m, k) and a B operand
// from one stored row-major in (n, k): both read two consecutive k per 32-bit load. Where
// the product's k runs along the rows of a tile in device memory (P V: k = key; dS K,
// P^T dO, dS^T Q), the tile is also stored transposed ("...t" tiles, (d, row)).
// A C fragment of a 16 x 64 tile (8 n-blocks of 4 floats) is already in A layout for the
// next product: k-block i takes n-blocks 2i (a0, a1 from c0..c3) and 2i + 1 (a2, a3).
//
// Determinism: no atomics; one dK/dV kernel per key tile, one dQ kernel per query tile,
// P recomputed in each (like kernels/ops/attention.cu).
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "kernels/ops/attention_common.cuh"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kTcThreads = 128;  // 4 warps x 16 rows
constexpr int kTile = 64;        // Br = Bc
constexpr int kPad = 8;          // bf16 elements of padding per shared row
constexpr int kTPitch = kTile + kPad;  // pitch of the transposed (d, row) tiles
static_assert(kTcThreads / 32 * 16 == kTile, "each warp owns 16 rows of the tile");

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as bf16 (round to nearest even), lo in the lower 16 bits.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

__device__ __forceinline__ uint32_t load_pair(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Rows [row0, row0 + 64) of one head (row r at src + base + r * stride) into shared memory:
// row-major into `tile` (pitch D + kPad) and/or transposed into `tile_t` ((d, row), pitch
// kTPitch); either may be null. Rows at or beyond seq are zero-filled.
template <int D>
__device__ void load_rows(bf16* tile, bf16* tile_t, const bf16* src, int64_t base, int64_t stride, int64_t row0,
                          int64_t seq) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  for (int e = threadIdx.x; e < kTile * kChunks; e += kTcThreads) {
    const int r = e / kChunks, c = (e % kChunks) * 8;
    const int64_t t = row0 + r;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (t < seq) v = *reinterpret_cast<const uint4*>(src + base + t * stride + c);
    if (tile) *reinterpret_cast<uint4*>(tile + r * (D + kPad) + c) = v;
    if (tile_t) {
      const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint16_t lo = static_cast<uint16_t>(w[i] & 0xffffu), hi = static_cast<uint16_t>(w[i] >> 16);
        tile_t[(c + 2 * i) * kTPitch + r] = __ushort_as_bfloat16(lo);
        tile_t[(c + 2 * i + 1) * kTPitch + r] = __ushort_as_bfloat16(hi);
      }
    }
  }
}

// acc (16 x N, C fragments) += A (rows row0 .. row0 + 15 of a row-major (m, k) shared tile)
// times B^T, B a row-major (n, k) shared tile with n in [0, N) and k in [0, K).
template <int N, int K>
__device__ __forceinline__ void warp_mma_ss(float (&acc)[N / 8][4], const bf16* a, int a_pitch, int row0,
                                            const bf16* b, int b_pitch) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int kk = 0; kk < K; kk += 16) {
    const bf16* ap = a + (row0 + g) * a_pitch + kk + 2 * t;
    const uint32_t af[4] = {load_pair(ap), load_pair(ap + 8 * a_pitch), load_pair(ap + 8),
                            load_pair(ap + 8 * a_pitch + 8)};
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
      const bf16* bp = b + (8 * j + g) * b_pitch + kk + 2 * t;
      mma_bf16(acc[j], af, load_pair(bp), load_pair(bp + 8));
    }
  }
}

// acc (16 x N) += P B^T, P a 16 x K fp32 tile in C fragments (rounded to bf16 here), B a
// row-major (n, k) shared tile.
template <int N, int K>
__device__ __forceinline__ void warp_mma_rs(float (&acc)[N / 8][4], const float (&p)[K / 8][4], const bf16* b,
                                            int b_pitch) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < K / 16; ++i) {
    const uint32_t af[4] = {pack_bf16(p[2 * i][0], p[2 * i][1]), pack_bf16(p[2 * i][2], p[2 * i][3]),
                            pack_bf16(p[2 * i + 1][0], p[2 * i + 1][1]), pack_bf16(p[2 * i + 1][2], p[2 * i + 1][3])};
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
      const bf16* bp = b + (8 * j + g) * b_pitch + 16 * i + 2 * t;
      mma_bf16(acc[j], af, load_pair(bp), load_pair(bp + 8));
    }
  }
}

template <int N>
__device__ __forceinline__ void zero(float (&acc)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
}

// Sum / max over the 4 lanes (t = 0..3) that share a fragment row; fixed order.
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}

// Stores rows g and g + 8 (row index row[h], skipped at or beyond seq) of a 16 x D C-fragment
// tile, times `mul`, as bf16 into dst (row r at base + r * stride).
template <int D>
__device__ __forceinline__ void store_rows(bf16* dst, const float (&acc)[D / 8][4], const int64_t (&row)[2],
                                           const float (&mul)[2], int64_t base, int64_t stride, int64_t seq) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (row[h] >= seq) continue;
    bf16* o = dst + base + row[h] * stride + 2 * t;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      *reinterpret_cast<uint32_t*>(o + 8 * j) = pack_bf16(mul[h] * acc[j][2 * h], mul[h] * acc[j][2 * h + 1]);
    }
  }
}

// ---- forward -------------------------------------------------------------------------------
template <int D>
struct TcFwdSmem {
  static constexpr int q = 0;                       // kTile x (D + kPad)
  static constexpr int k = q + kTile * (D + kPad);  // kTile x (D + kPad)
  static constexpr int vt = k + kTile * (D + kPad); // D x kTPitch (v transposed)
  static constexpr int elems = vt + D * kTPitch;
  static constexpr size_t bytes = elems * sizeof(bf16);
};

// grid (ceil(T / 64), B * H), 128 threads: block = one query tile of one head; warp w owns
// query rows 16 w .. 16 w + 15 of it.
template <int D, class Mask>
__global__ void __launch_bounds__(kTcThreads) attention_forward_tc_kernel(bf16* out, float* lse, const bf16* q,
                                                                          const bf16* k, const bf16* v, int64_t seq,
                                                                          int64_t heads, float scale, Mask mask_arg) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  using L = TcFwdSmem<D>;
  bf16* smem = reinterpret_cast<bf16*>(smem_bytes);
  bf16* qs = smem + L::q;
  bf16* ks = smem + L::k;
  bf16* vts = smem + L::vt;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int64_t bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const Mask mask = mask_arg.at_batch(b);
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t q1 = q0 + kTile < seq ? q0 + kTile : seq;
  const int64_t stride = heads * D, base = (b * seq * heads + h) * D;
  const int r0 = warp * 16;
  const int64_t row[2] = {q0 + r0 + g, q0 + r0 + g + 8};  // this lane's two query rows

  load_rows<D>(qs, nullptr, q, base, stride, q0, seq);
  float acc[D / 8][4];
  zero(acc);
  float m_run[2] = {kNegInf, kNegInf}, l_run[2] = {0.0f, 0.0f};

  const int64_t k_end = mask.key_end(q1) < seq ? mask.key_end(q1) : seq;
  for (int64_t k0 = mask.key_begin(q0) / kTile * kTile; k0 < k_end; k0 += kTile) {
    const int64_t k1 = k0 + kTile < seq ? k0 + kTile : seq;
    const BlockKind kind = mask.block(q0, q1, k0, k1);
    if (kind == BlockKind::masked) continue;  // wholly hidden: never loaded
    __syncthreads();  // the previous tile's ks, vts are no longer read
    load_rows<D>(ks, nullptr, k, base, stride, k0, seq);
    load_rows<D>(nullptr, vts, v, base, stride, k0, seq);
    __syncthreads();
    float s[kTile / 8][4];
    zero(s);
    warp_mma_ss<kTile, D>(s, qs, D + kPad, r0, ks, D + kPad);
    // Scaled scores, -inf where masked or out of range; the row maxima of this tile.
    float mx[2] = {kNegInf, kNegInf};
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int hr = e >> 1;
        const int64_t key = k0 + 8 * j + 2 * tq + (e & 1);
        const bool keep = row[hr] < seq && key < seq && (kind == BlockKind::full || mask.allowed(row[hr], key));
        const float x = keep ? scale * s[j][e] : kNegInf;
        s[j][e] = x;
        mx[hr] = fmaxf(mx[hr], x);
      }
    }
    float m_new[2], alpha[2];
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      m_new[hr] = fmaxf(m_run[hr], quad_max(mx[hr]));
      // Nothing seen yet in this row (m_new = -inf): keep zeros. Else alpha = 0 when m_run = -inf.
      alpha[hr] = m_new[hr] == kNegInf ? 1.0f : expf(m_run[hr] - m_new[hr]);
    }
    float rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int hr = e >> 1;
        const float p = m_new[hr] == kNegInf ? 0.0f : expf(s[j][e] - m_new[hr]);
        s[j][e] = p;
        rs[hr] += p;
      }
    }
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      l_run[hr] = l_run[hr] * alpha[hr] + quad_sum(rs[hr]);
      m_run[hr] = m_new[hr];
    }
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      acc[j][0] *= alpha[0];
      acc[j][1] *= alpha[0];
      acc[j][2] *= alpha[1];
      acc[j][3] *= alpha[1];
    }
    warp_mma_rs<D, kTile>(acc, s, vts, kTPitch);  // acc += P V
  }
  const float inv[2] = {1.0f / l_run[0], 1.0f / l_run[1]};
  store_rows<D>(out, acc, row, inv, base, stride, seq);
  if (tq == 0) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      if (row[hr] < seq) lse[bh * seq + row[hr]] = m_run[hr] + logf(l_run[hr]);
    }
  }
}

// ---- backward --------------------------------------------------------------------------------
template <int D>
struct TcBwdSmem {
  static constexpr int k = 0;                          // kTile x (D + kPad)
  static constexpr int v = k + kTile * (D + kPad);     // kTile x (D + kPad)
  static constexpr int q = v + kTile * (D + kPad);     // kTile x (D + kPad)
  static constexpr int dout = q + kTile * (D + kPad);  // kTile x (D + kPad)
  static constexpr int t0 = dout + kTile * (D + kPad); // D x kTPitch: q^T (dK/dV kernel) or k^T (dQ kernel)
  static constexpr int t1 = t0 + D * kTPitch;          // D x kTPitch: dout^T (dK/dV kernel only)
  static constexpr int elems = t1 + D * kTPitch;
  static constexpr size_t lse_offset = elems * sizeof(bf16);  // kTile floats, then kTile floats of delta
  static constexpr size_t bytes = lse_offset + 2 * kTile * sizeof(float);
};

// lse and delta of query rows [q0, q0 + 64) (zeros beyond seq) into shared memory.
__device__ __forceinline__ void load_row_stats(float* lses, float* deltas, const float* lse, const float* delta,
                                               int64_t bh, int64_t q0, int64_t seq) {
  if (threadIdx.x < kTile) {
    const int64_t t = q0 + threadIdx.x;
    lses[threadIdx.x] = t < seq ? lse[bh * seq + t] : 0.0f;
    deltas[threadIdx.x] = t < seq ? delta[bh * seq + t] : 0.0f;
  }
}

// grid (ceil(T / 64), B * H): block = one key tile of one head; warp w owns key rows
// 16 w .. 16 w + 15 and computes, transposed (keys as rows, queries as columns):
//   S^T = K Q^T, P^T = exp(scale S^T - lse), dP^T = V dO^T, dS^T = P^T (dP^T - delta),
//   dV += P^T dO, dK += dS^T Q;  finally dk = scale dK.
template <int D, class Mask>
__global__ void __launch_bounds__(kTcThreads) attention_dkdv_tc_kernel(bf16* dk, bf16* dv, const bf16* dout,
                                                                       const bf16* q, const bf16* k, const bf16* v,
                                                                       const float* lse, const float* delta,
                                                                       int64_t seq, int64_t heads, float scale,
                                                                       Mask mask_arg) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  using L = TcBwdSmem<D>;
  bf16* smem = reinterpret_cast<bf16*>(smem_bytes);
  bf16* ks = smem + L::k;
  bf16* vs = smem + L::v;
  bf16* qs = smem + L::q;
  bf16* dos = smem + L::dout;
  bf16* qts = smem + L::t0;
  bf16* dots = smem + L::t1;
  float* lses = reinterpret_cast<float*>(smem_bytes + L::lse_offset);
  float* deltas = lses + kTile;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int64_t bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const Mask mask = mask_arg.at_batch(b);
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t stride = heads * D, base = (b * seq * heads + h) * D;
  const int c0 = warp * 16;
  const int64_t key[2] = {k0 + c0 + g, k0 + c0 + g + 8};  // this lane's two key rows
  load_rows<D>(ks, nullptr, k, base, stride, k0, seq);
  load_rows<D>(vs, nullptr, v, base, stride, k0, seq);

  float dk_acc[D / 8][4], dv_acc[D / 8][4];
  zero(dk_acc);
  zero(dv_acc);
  const int64_t k1 = k0 + kTile < seq ? k0 + kTile : seq;
  const int64_t q_end = mask.query_end(k1, seq);
  for (int64_t q0 = mask.query_begin(k0) / kTile * kTile; q0 < q_end; q0 += kTile) {
    const BlockKind kind = mask.block(q0, q0 + kTile < seq ? q0 + kTile : seq, k0, k1);
    if (kind == BlockKind::masked) continue;  // wholly hidden: never loaded
    __syncthreads();  // the previous query tile is no longer read (and ks, vs are loaded)
    load_rows<D>(qs, qts, q, base, stride, q0, seq);
    load_rows<D>(dos, dots, dout, base, stride, q0, seq);
    load_row_stats(lses, deltas, lse, delta, bh, q0, seq);
    __syncthreads();
    float pt[kTile / 8][4], dst[kTile / 8][4];
    zero(pt);
    zero(dst);
    warp_mma_ss<kTile, D>(pt, ks, D + kPad, c0, qs, D + kPad);    // S^T
    warp_mma_ss<kTile, D>(dst, vs, D + kPad, c0, dos, D + kPad);  // dP^T
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int hr = e >> 1, col = 8 * j + 2 * tq + (e & 1);
        const int64_t t = q0 + col;
        float p = 0.0f, ds = 0.0f;
        if (t < seq && key[hr] < seq && (kind == BlockKind::full || mask.allowed(t, key[hr]))) {
          p = expf(scale * pt[j][e] - lses[col]);
          ds = p * (dst[j][e] - deltas[col]);
        }
        pt[j][e] = p;
        dst[j][e] = ds;
      }
    }
    warp_mma_rs<D, kTile>(dv_acc, pt, dots, kTPitch);  // dV += P^T dO
    warp_mma_rs<D, kTile>(dk_acc, dst, qts, kTPitch);  // dK += dS^T Q
  }
  const float one[2] = {1.0f, 1.0f}, scales[2] = {scale, scale};
  store_rows<D>(dk, dk_acc, key, scales, base, stride, seq);
  store_rows<D>(dv, dv_acc, key, one, base, stride, seq);
}

// grid (ceil(T / 64), B * H): block = one query tile of one head; warp w owns query rows
// 16 w .. 16 w + 15:  S = Q K^T, P, dP = dO V^T, dS = P (dP - delta), dQ += dS K; dq = scale dQ.
template <int D, class Mask>
__global__ void __launch_bounds__(kTcThreads) attention_dq_tc_kernel(bf16* dq, const bf16* dout, const bf16* q,
                                                                     const bf16* k, const bf16* v, const float* lse,
                                                                     const float* delta, int64_t seq, int64_t heads,
                                                                     float scale, Mask mask_arg) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  using L = TcBwdSmem<D>;  // t1 is unused here
  bf16* smem = reinterpret_cast<bf16*>(smem_bytes);
  bf16* ks = smem + L::k;
  bf16* vs = smem + L::v;
  bf16* qs = smem + L::q;
  bf16* dos = smem + L::dout;
  bf16* kts = smem + L::t0;
  float* lses = reinterpret_cast<float*>(smem_bytes + L::lse_offset);
  float* deltas = lses + kTile;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int64_t bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const Mask mask = mask_arg.at_batch(b);
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t q1 = q0 + kTile < seq ? q0 + kTile : seq;
  const int64_t stride = heads * D, base = (b * seq * heads + h) * D;
  const int r0 = warp * 16;
  const int64_t row[2] = {q0 + r0 + g, q0 + r0 + g + 8};
  load_rows<D>(qs, nullptr, q, base, stride, q0, seq);
  load_rows<D>(dos, nullptr, dout, base, stride, q0, seq);
  load_row_stats(lses, deltas, lse, delta, bh, q0, seq);

  float acc[D / 8][4];
  zero(acc);
  const int64_t k_end = mask.key_end(q1) < seq ? mask.key_end(q1) : seq;
  for (int64_t k0 = mask.key_begin(q0) / kTile * kTile; k0 < k_end; k0 += kTile) {
    const int64_t k1 = k0 + kTile < seq ? k0 + kTile : seq;
    const BlockKind kind = mask.block(q0, q1, k0, k1);
    if (kind == BlockKind::masked) continue;  // wholly hidden: never loaded
    __syncthreads();
    load_rows<D>(ks, kts, k, base, stride, k0, seq);
    load_rows<D>(vs, nullptr, v, base, stride, k0, seq);
    __syncthreads();
    float s[kTile / 8][4], ds[kTile / 8][4];
    zero(s);
    zero(ds);
    warp_mma_ss<kTile, D>(s, qs, D + kPad, r0, ks, D + kPad);    // S
    warp_mma_ss<kTile, D>(ds, dos, D + kPad, r0, vs, D + kPad);  // dP
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int hr = e >> 1, r = r0 + g + 8 * hr;
        const int64_t key = k0 + 8 * j + 2 * tq + (e & 1);
        float d = 0.0f;
        if (row[hr] < seq && key < seq && (kind == BlockKind::full || mask.allowed(row[hr], key))) {
          const float p = expf(scale * s[j][e] - lses[r]);
          d = p * (ds[j][e] - deltas[r]);
        }
        ds[j][e] = d;
      }
    }
    warp_mma_rs<D, kTile>(acc, ds, kts, kTPitch);  // dQ += dS K
  }
  const float scales[2] = {scale, scale};
  store_rows<D>(dq, acc, row, scales, base, stride, seq);
}

AttentionKernel kernel_from_environment() {
  const char* value = std::getenv("SPEEDRUN_ATTENTION");
  const std::string v = value ? value : "";
  if (v.empty() || v == "tc") return AttentionKernel::tensor_core;
  if (v == "simt") return AttentionKernel::simt;
  if (v == "flash") return AttentionKernel::flash;
  throw UserError("SPEEDRUN_ATTENTION=" + v + ": expected simt, tc, flash or nothing (environment variable)");
}

// -1: no override; else an AttentionKernel.
int kernel_override = -1;

}  // namespace

AttentionKernel attention_kernel() {
  static const AttentionKernel from_environment = kernel_from_environment();
  return kernel_override < 0 ? from_environment : static_cast<AttentionKernel>(kernel_override);
}

AttentionKernel set_attention_kernel(AttentionKernel kernel) {
  const AttentionKernel previous = attention_kernel();
  kernel_override = static_cast<int>(kernel);
  return previous;
}

bool use_tensor_core_attention(DType act, std::initializer_list<const void*> pointers) {
  if (act != DType::bf16 || attention_kernel() != AttentionKernel::tensor_core) return false;
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

bool use_flash_attention(DType act, std::initializer_list<const void*> pointers) {
  if (act != DType::bf16 || attention_kernel() != AttentionKernel::flash) return false;
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 == 0) continue;
    // Said once per process: a run whose tensors are unaligned would say it at every layer.
    static std::atomic<bool> said{false};
    if (!said.exchange(true)) {
      std::fprintf(stderr,
                   "speedrun: warning: SPEEDRUN_ATTENTION=flash, but an attention tensor is not 16-byte aligned: "
                   "such calls run on the CUDA-core kernels instead (said once)\n");
    }
    return false;
  }
  return true;
}

namespace {

template <class Mask>
void forward_tc(void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch, int64_t seq,
                int64_t heads, int64_t head_dim, float scale, const Mask& mask) {
  if (batch * seq * heads <= 0) return;
  with_head_dim(head_dim, "attention_forward", [&]<int D>(std::integral_constant<int, D>) {
    auto kernel = attention_forward_tc_kernel<D, Mask>;
    allow_smem(kernel, TcFwdSmem<D>::bytes);
    kernel<<<attention_tile_grid(seq, batch * heads, kTile), kTcThreads, TcFwdSmem<D>::bytes, stream()>>>(
        static_cast<bf16*>(out), lse, static_cast<const bf16*>(q), static_cast<const bf16*>(k),
        static_cast<const bf16*>(v), seq, heads, scale, mask);
    CUDA_CHECK_LAUNCH();
  });
}

template <class Mask>
void backward_tc(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v,
                 const void* out, const float* lse, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                 float scale, const Mask& mask) {
  const int64_t rows = batch * seq * heads;
  if (rows <= 0) return;
  with_head_dim(head_dim, "attention_backward", [&]<int D>(std::integral_constant<int, D>) {
    float* delta = static_cast<float*>(workspace(static_cast<size_t>(rows) * sizeof(float)));
    launch_attention_delta<bf16>(delta, static_cast<const bf16*>(dout), static_cast<const bf16*>(out), rows, seq,
                                 heads, head_dim);
    const dim3 grid = attention_tile_grid(seq, batch * heads, kTile);
    auto dkdv = attention_dkdv_tc_kernel<D, Mask>;
    allow_smem(dkdv, TcBwdSmem<D>::bytes);
    dkdv<<<grid, kTcThreads, TcBwdSmem<D>::bytes, stream()>>>(
        static_cast<bf16*>(dk), static_cast<bf16*>(dv), static_cast<const bf16*>(dout), static_cast<const bf16*>(q),
        static_cast<const bf16*>(k), static_cast<const bf16*>(v), lse, delta, seq, heads, scale, mask);
    CUDA_CHECK_LAUNCH();
    auto dqk = attention_dq_tc_kernel<D, Mask>;
    allow_smem(dqk, TcBwdSmem<D>::bytes);
    dqk<<<grid, kTcThreads, TcBwdSmem<D>::bytes, stream()>>>(
        static_cast<bf16*>(dq), static_cast<const bf16*>(dout), static_cast<const bf16*>(q),
        static_cast<const bf16*>(k), static_cast<const bf16*>(v), lse, delta, seq, heads, scale, mask);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void attention_forward_tc(void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                          int64_t seq, int64_t heads, int64_t head_dim, float scale) {
  forward_tc(out, lse, q, k, v, batch, seq, heads, head_dim, scale, CausalMask{});
}

void attention_forward_tc_masked(void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                                 int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                 const DocWindowMask& mask) {
  forward_tc(out, lse, q, k, v, batch, seq, heads, head_dim, scale, mask);
}

void attention_backward_tc(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                           const void* v, const void* out, const float* lse, int64_t batch, int64_t seq,
                           int64_t heads, int64_t head_dim, float scale) {
  backward_tc(dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale, CausalMask{});
}

void attention_backward_tc_masked(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                                  const void* v, const void* out, const float* lse, int64_t batch, int64_t seq,
                                  int64_t heads, int64_t head_dim, float scale, const DocWindowMask& mask) {
  backward_tc(dq, dk, dv, dout, q, k, v, out, lse, batch, seq, heads, head_dim, scale, mask);
}

}  // namespace speedrun::cuda
