// RMSNorm over the last dimension, with or without gains (QK-norm is the gain-less case
// over rows of head_dim), forward and backward. Two sets of kernels, chosen per call by
// rmsnorm_kernel() (kernels/ops/ops_cuda.h; SPEEDRUN_RMSNORM=legacy|fast, read once): the
// one-pass kernels (described below, before their code) and the legacy ones here.
// residual_rmsnorm_forward fuses the residual add into the one-pass forward
// (SPEEDRUN_FUSE_NORMS=1; kernel residual_rmsnorm_forward_rows, not yet run on a GPU).
//
// Legacy launch shape: one warp per row, 8 rows (256 threads) per block, grid ceil(rows / 8).
// The model's rows have 768 (d_model) or 128 / 64 (head_dim) elements: a warp covers a row
// in 24 or 4 / 2 coalesced sweeps, and the row's sum of squares is a warp reduction with
// no shared memory or block barrier. Lanes stride over the row (lane, lane+32, ...), so any
// channel count works, multiples of 32 or not.
//
// Aliasing: out may alias x (forward) and dx may alias dout or x (backward, not
// accumulating): each lane reads the elements it later writes, and the warp reduction
// (__shfl_xor_sync) separates the reads of the whole row from the first write.
#include "core/error.h"
#include "kernels/ops/column_sums.cuh"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kRowsPerBlock = 8;

// r = 1 / sqrt(mean(x^2) + eps) (as the CPU: sum / C, then 1 / sqrt, not rsqrt);
// out = (x r) g.
template <class T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* x, const float* gains, int64_t rows,
                                       int64_t channels, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;  // the whole warp leaves together: the shuffles below stay full
  const T* xr = x + row * channels;
  T* yr = out + row * channels;
  float ss = 0.0f;
  for (int64_t c = lane; c < channels; c += 32) {
    const float v = to_f32(xr[c]);
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(channels) + eps);
  if (lane == 0) rstd[row] = r;
  for (int64_t c = lane; c < channels; c += 32) {
    const float v = to_f32(xr[c]) * r;
    yr[c] = from_f32<T>(gains ? v * gains[c] : v);
  }
}

// With u = dout * g (dout without gains) and r = rstd[row]:
//   dx = r u - r^3 x (u . x) / C,  written or added.
template <class T>
__global__ void rmsnorm_backward_kernel(T* dx, const T* dout, const T* x, const float* gains, const float* rstd,
                                        int64_t rows, int64_t channels, bool accumulate_dx) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const T* dy = dout + row * channels;
  const T* xr = x + row * channels;
  T* dxr = dx + row * channels;
  float ux = 0.0f;
  for (int64_t c = lane; c < channels; c += 32) {
    const float u = gains ? to_f32(dy[c]) * gains[c] : to_f32(dy[c]);
    ux += u * to_f32(xr[c]);
  }
  ux = warp_sum(ux);
  const float r = rstd[row];
  const float k = (r * r * r) * (ux / static_cast<float>(channels));
  for (int64_t c = lane; c < channels; c += 32) {
    const float u = gains ? to_f32(dy[c]) * gains[c] : to_f32(dy[c]);
    float g = r * u - k * to_f32(xr[c]);
    if (accumulate_dx) g += to_f32(dxr[c]);
    dxr[c] = from_f32<T>(g);
  }
}

// value(r, c) = dout[r, c] * (x[r, c] * rstd[r]) for dgains.
template <class T>
struct GainsGradValue {
  const T* dout;
  const T* x;
  const float* rstd;
  int64_t cols;
  __device__ float operator()(int64_t r, int64_t c) const {
    return to_f32(dout[r * cols + c]) * (to_f32(x[r * cols + c]) * rstd[r]);
  }
};

// ---- One-pass kernels -------------------------------------------------------------------
// Forward: x is read once and out written once; backward: x, dout (and dx when it
// accumulates) are read once and dx written once, and the gains gradient is reduced in the
// same pass. A row lives in registers between its reduction and its use.
//
// Layout<T, G, N, R>: a group of G lanes (8, 16 or 32; aligned within the warp) owns a row;
// lane l of the group loads the 16-byte vectors j = 0..N-1 at elements (j G + l) V, V = 16 /
// sizeof(T) (8 bf16, 4 f32), so one load instruction of the warp reads 32 x 16 contiguous
// bytes per row segment. Each group takes R rows at a time (R = 2 when a row is a single
// sweep, to keep more bytes in flight per warp). Vectors past the row's end are masked
// (zeros in, nothing out), rows past `rows` likewise: the loop bounds are the same for the
// whole warp, so every lane takes part in every shuffle. The row sums are butterfly sums
// within the group (fixed order).
//
// The grid is persistent: at most (SMs x resident blocks per SM) blocks of 256 threads
// stride over the rows. The gains are loaded into registers once per lane (g = 1 without
// gains: x r 1 = x r exactly, as the legacy kernels' branch). In the backward, each lane
// adds its rows' dout (x r) into registers; at the end every group writes its partial sums
// to shared memory, the block adds them in group order and writes one row of an f32
// scratch (grid x C, in cuda::workspace()), and rmsnorm_dgains_finish adds the grid's rows
// in a fixed order and adds the total to dgains once: no atomics, and the same bits on
// every run for the same inputs and device (the grid depends on the SM count).
//
// Eligible: C a multiple of V, C <= 32 N_max V (1024 for bf16 and f32), and x, out / dx,
// dout 16-byte aligned; the gains need no alignment (loaded once, element by element).
// Anything else runs the legacy kernels. The arithmetic is the legacy kernels' formula
// for formula (sum / C, then 1 / sqrt; r u - r^3 x (u . x) / C); only the summation
// order differs. The aliasing rules above hold: each element is read and written by one
// lane only, and all of a lane's loads of a row precede its stores.

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// 16 bytes of T as V floats: exact widening on load, round to nearest even on store.
template <class T>
struct Vec16;
template <>
struct Vec16<float> {
  static constexpr int V = 4;
  __device__ static void unpack(const uint4& u, float (&f)[V]) {
    f[0] = __uint_as_float(u.x);
    f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z);
    f[3] = __uint_as_float(u.w);
  }
  __device__ static uint4 pack(const float (&f)[V]) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
  }
};
template <>
struct Vec16<bf16> {
  static constexpr int V = 8;
  // A 32-bit word holds elements 2i (low half) and 2i + 1 (high half): little endian.
  __device__ static float lo(uint32_t w) { return __uint_as_float(w << 16); }
  __device__ static float hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
  __device__ static uint32_t two(float a, float b) {
    return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(a))) |
           (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(b))) << 16);
  }
  __device__ static void unpack(const uint4& u, float (&f)[V]) {
    f[0] = lo(u.x), f[1] = hi(u.x), f[2] = lo(u.y), f[3] = hi(u.y);
    f[4] = lo(u.z), f[5] = hi(u.z), f[6] = lo(u.w), f[7] = hi(u.w);
  }
  __device__ static uint4 pack(const float (&f)[V]) {
    return make_uint4(two(f[0], f[1]), two(f[2], f[3]), two(f[4], f[5]), two(f[6], f[7]));
  }
};

template <class T_, int G_, int N_, int R_>
struct Layout {
  using T = T_;
  static constexpr int G = G_, N = N_, R = R_;
  static constexpr int V = Vec16<T>::V;
  static constexpr int kGroupsPerWarp = 32 / G;
  static constexpr int kGroupsPerBlock = kThreads / G;
  static constexpr int kRowsPerWarpStep = kGroupsPerWarp * R;  // consecutive rows
  static constexpr int kRowsPerBlockStep = kWarps * kRowsPerWarpStep;
  static constexpr int kMaxChannels = G * N * V;
  // The backward's shared memory for the per-group gains partials, at the largest C.
  static constexpr size_t kMaxSmemBytes = sizeof(float) * kGroupsPerBlock * kMaxChannels;
  static_assert(G == 8 || G == 16 || G == 32);
};

// Sum over the G lanes of an aligned group; every lane of the warp must call it.
template <int G>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int offset = G / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// Where a lane's part of the rows lies: group gi of the warp, lane gl in the group.
template <class L>
struct LanePlace {
  int gl, gi;
  __device__ LanePlace() : gl((threadIdx.x & 31) % L::G), gi((threadIdx.x & 31) / L::G) {}
  __device__ int channel(int j) const { return (j * L::G + gl) * L::V; }  // first element of vector j
};

// Loads the lane's gains (1 without gains) into registers.
template <class L>
__device__ __forceinline__ void load_gains(float (&g)[L::N][L::V], const float* gains, const LanePlace<L>& at,
                                           int channels) {
#pragma unroll
  for (int j = 0; j < L::N; ++j) {
    const int c0 = at.channel(j);
#pragma unroll
    for (int k = 0; k < L::V; ++k) g[j][k] = (gains && c0 < channels) ? gains[c0 + k] : 1.0f;
  }
}

// The second half of the one-pass forward, shared by rmsnorm_forward_rows and
// residual_rmsnorm_forward_rows: each row's sum of squares of the loaded values `raw` (fp32,
// reduced over the row's lane group), its rstd (written by the group's first lane), and the
// normed output; `sum` (or null) also receives `raw` itself (the fused kernel's residual).
template <class L>
__device__ __forceinline__ void normalize_rows(typename L::T* sum, typename L::T* out, float* rstd,
                                               const uint4 (&raw)[L::R][L::N], const float (&g)[L::N][L::V],
                                               const LanePlace<L>& at, int64_t base, int64_t rows, int channels,
                                               float eps) {
  using IO = Vec16<typename L::T>;
  float r[L::R];
#pragma unroll
  for (int rr = 0; rr < L::R; ++rr) {
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < L::N; ++j) {
      float v[L::V];
      IO::unpack(raw[rr][j], v);
#pragma unroll
      for (int k = 0; k < L::V; ++k) ss += v[k] * v[k];
    }
    r[rr] = group_sum<L::G>(ss);
  }
#pragma unroll
  for (int rr = 0; rr < L::R; ++rr) {
    const int64_t row = base + rr * L::kGroupsPerWarp + at.gi;
    if (row >= rows) continue;
    const float rs = 1.0f / sqrtf(r[rr] / static_cast<float>(channels) + eps);
    if (at.gl == 0) rstd[row] = rs;
#pragma unroll
    for (int j = 0; j < L::N; ++j) {
      const int c0 = at.channel(j);
      if (c0 >= channels) continue;
      if (sum) *reinterpret_cast<uint4*>(sum + row * channels + c0) = raw[rr][j];
      float v[L::V];
      IO::unpack(raw[rr][j], v);
#pragma unroll
      for (int k = 0; k < L::V; ++k) v[k] = (v[k] * rs) * g[j][k];
      *reinterpret_cast<uint4*>(out + row * channels + c0) = IO::pack(v);
    }
  }
}

template <class L>
__global__ void __launch_bounds__(kThreads) rmsnorm_forward_rows(typename L::T* out, float* rstd,
                                                                 const typename L::T* x, const float* gains,
                                                                 int64_t rows, int channels, float eps) {
  using IO = Vec16<typename L::T>;
  const LanePlace<L> at;
  float g[L::N][L::V];
  load_gains<L>(g, gains, at, channels);
  const int64_t step = static_cast<int64_t>(gridDim.x) * L::kRowsPerBlockStep;
  for (int64_t base = (static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * L::kRowsPerWarpStep;
       base < rows; base += step) {
    uint4 raw[L::R][L::N];
#pragma unroll
    for (int rr = 0; rr < L::R; ++rr) {
      const int64_t row = base + rr * L::kGroupsPerWarp + at.gi;
#pragma unroll
      for (int j = 0; j < L::N; ++j) {
        const int c0 = at.channel(j);
        raw[rr][j] = (row < rows && c0 < channels)
                         ? *reinterpret_cast<const uint4*>(x + row * channels + c0)
                         : make_uint4(0u, 0u, 0u, 0u);
      }
    }
    normalize_rows<L>(nullptr, out, rstd, raw, g, at, base, rows, channels, eps);
  }
}

// The residual add fused into this forward (cuda::residual_rmsnorm_forward): the layout and
// the reduction of rmsnorm_forward_rows, over s = a + b computed in fp32 and rounded to T
// on the spot (Vec16::pack: round to nearest even, as residual_forward's kernel). The sum
// of squares, out and rstd are then computed from the rounded s exactly as
// rmsnorm_forward_rows computes them from x, so for the same inputs this kernel's sum, out
// and rstd are bitwise those of residual_forward then the one-pass forward (a CUDA test
// checks it). Aliasing: each element of a, b is read by one lane before that lane writes
// the same element of sum or out, so sum or out may alias a or b. NOT YET RUN ON A GPU.
template <class L>
__global__ void __launch_bounds__(kThreads) residual_rmsnorm_forward_rows(
    typename L::T* sum, typename L::T* out, float* rstd, const typename L::T* a, const typename L::T* b,
    const float* gains, int64_t rows, int channels, float eps) {
  using IO = Vec16<typename L::T>;
  const LanePlace<L> at;
  float g[L::N][L::V];
  load_gains<L>(g, gains, at, channels);
  const int64_t step = static_cast<int64_t>(gridDim.x) * L::kRowsPerBlockStep;
  for (int64_t base = (static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * L::kRowsPerWarpStep;
       base < rows; base += step) {
    uint4 raw_a[L::R][L::N], raw_b[L::R][L::N];
#pragma unroll
    for (int rr = 0; rr < L::R; ++rr) {
      const int64_t row = base + rr * L::kGroupsPerWarp + at.gi;
#pragma unroll
      for (int j = 0; j < L::N; ++j) {
        const int c0 = at.channel(j);
        const bool load = row < rows && c0 < channels;
        const int64_t off = row * channels + c0;
        raw_a[rr][j] = load ? *reinterpret_cast<const uint4*>(a + off) : make_uint4(0u, 0u, 0u, 0u);
        raw_b[rr][j] = load ? *reinterpret_cast<const uint4*>(b + off) : make_uint4(0u, 0u, 0u, 0u);
      }
    }
    // raw_a becomes the rounded sum (zeros stay zeros where masked).
#pragma unroll
    for (int rr = 0; rr < L::R; ++rr) {
#pragma unroll
      for (int j = 0; j < L::N; ++j) {
        float va[L::V], vb[L::V];
        IO::unpack(raw_a[rr][j], va);
        IO::unpack(raw_b[rr][j], vb);
#pragma unroll
        for (int k = 0; k < L::V; ++k) va[k] += vb[k];
        raw_a[rr][j] = IO::pack(va);
      }
    }
    normalize_rows<L>(sum, out, rstd, raw_a, g, at, base, rows, channels, eps);
  }
}

// dgains_partial: null, or (gridDim.x, channels) f32 that receives the block's sums; it then
// needs sizeof(float) * kGroupsPerBlock * channels bytes of dynamic shared memory.
template <class L>
__global__ void __launch_bounds__(kThreads) rmsnorm_backward_rows(typename L::T* dx, float* dgains_partial,
                                                                  const typename L::T* dout,
                                                                  const typename L::T* x, const float* gains,
                                                                  const float* rstd, int64_t rows, int channels,
                                                                  bool accumulate_dx) {
  using IO = Vec16<typename L::T>;
  extern __shared__ float group_partials[];  // [kGroupsPerBlock][channels]
  const LanePlace<L> at;
  float g[L::N][L::V], dg[L::N][L::V];
  load_gains<L>(g, gains, at, channels);
#pragma unroll
  for (int j = 0; j < L::N; ++j) {
#pragma unroll
    for (int k = 0; k < L::V; ++k) dg[j][k] = 0.0f;
  }
  const bool read_old = dx && accumulate_dx;
  const int64_t step = static_cast<int64_t>(gridDim.x) * L::kRowsPerBlockStep;
  for (int64_t base = (static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * L::kRowsPerWarpStep;
       base < rows; base += step) {
    uint4 xs[L::R][L::N], dys[L::R][L::N], olds[L::R][L::N];
    float r[L::R];
#pragma unroll
    for (int rr = 0; rr < L::R; ++rr) {
      const int64_t row = base + rr * L::kGroupsPerWarp + at.gi;
      const bool in = row < rows;
      r[rr] = in ? rstd[row] : 0.0f;
#pragma unroll
      for (int j = 0; j < L::N; ++j) {
        const int c0 = at.channel(j);
        const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
        const bool load = in && c0 < channels;
        const int64_t off = row * channels + c0;
        xs[rr][j] = load ? *reinterpret_cast<const uint4*>(x + off) : zero;
        dys[rr][j] = load ? *reinterpret_cast<const uint4*>(dout + off) : zero;
        olds[rr][j] = (load && read_old) ? *reinterpret_cast<const uint4*>(dx + off) : zero;
      }
    }
    if (dx) {
      float ux[L::R];
#pragma unroll
      for (int rr = 0; rr < L::R; ++rr) {
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < L::N; ++j) {
          float xv[L::V], dy[L::V];
          IO::unpack(xs[rr][j], xv);
          IO::unpack(dys[rr][j], dy);
#pragma unroll
          for (int k = 0; k < L::V; ++k) s += (dy[k] * g[j][k]) * xv[k];
        }
        ux[rr] = group_sum<L::G>(s);
      }
#pragma unroll
      for (int rr = 0; rr < L::R; ++rr) {
        const int64_t row = base + rr * L::kGroupsPerWarp + at.gi;
        if (row >= rows) continue;
        const float kx = (r[rr] * r[rr] * r[rr]) * (ux[rr] / static_cast<float>(channels));
#pragma unroll
        for (int j = 0; j < L::N; ++j) {
          const int c0 = at.channel(j);
          if (c0 >= channels) continue;
          float xv[L::V], dy[L::V], old[L::V];
          IO::unpack(xs[rr][j], xv);
          IO::unpack(dys[rr][j], dy);
          IO::unpack(olds[rr][j], old);
#pragma unroll
          for (int k = 0; k < L::V; ++k) {
            float d = r[rr] * (dy[k] * g[j][k]) - kx * xv[k];
            if (read_old) d += old[k];
            xv[k] = d;
          }
          *reinterpret_cast<uint4*>(dx + row * channels + c0) = IO::pack(xv);
        }
      }
    }
    if (dgains_partial) {
      // Masked rows and vectors were loaded as zeros (and r = 0): they add exactly 0.
#pragma unroll
      for (int rr = 0; rr < L::R; ++rr) {
#pragma unroll
        for (int j = 0; j < L::N; ++j) {
          float xv[L::V], dy[L::V];
          IO::unpack(xs[rr][j], xv);
          IO::unpack(dys[rr][j], dy);
#pragma unroll
          for (int k = 0; k < L::V; ++k) dg[j][k] += dy[k] * (xv[k] * r[rr]);
        }
      }
    }
  }
  if (!dgains_partial) return;  // uniform over the block: the barrier below stays legal
  float* mine = group_partials + static_cast<int64_t>((threadIdx.x >> 5) * L::kGroupsPerWarp + at.gi) * channels;
#pragma unroll
  for (int j = 0; j < L::N; ++j) {
    const int c0 = at.channel(j);
    if (c0 >= channels) continue;
#pragma unroll
    for (int k = 0; k < L::V; ++k) mine[c0 + k] = dg[j][k];
  }
  __syncthreads();
  for (int c = threadIdx.x; c < channels; c += kThreads) {
    float s = 0.0f;
    for (int p = 0; p < L::kGroupsPerBlock; ++p) s += group_partials[p * channels + c];
    dgains_partial[static_cast<int64_t>(blockIdx.x) * channels + c] = s;
  }
}

// dgains[c] += sum over the blocks' rows partial[b, c]: block (32, 8) per 32 columns; thread
// (tx, ty) adds rows b = ty, ty + 8, ... in order, then ty = 0 adds the 8 sums in order.
__global__ void rmsnorm_dgains_finish(float* dgains, const float* partial, int blocks, int channels) {
  __shared__ float sums[8][32];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float acc = 0.0f;
  if (c < channels) {
    for (int b = threadIdx.y; b < blocks; b += 8) acc += partial[static_cast<int64_t>(b) * channels + c];
  }
  sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < channels) {
    float total = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) total += sums[j][threadIdx.x];
    dgains[c] += total;
  }
}

// Persistent grid: min(the blocks the rows need, SMs x resident blocks of this kernel).
// Queried once per kernel (one device per process, as everywhere in the backend).
int sm_count() {
  static const int sms = [] {
    int device = 0, n = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    return n > 0 ? n : 1;
  }();
  return sms;
}
template <class Kernel>
int resident_blocks(Kernel kernel, size_t smem_bytes) {
  int n = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kThreads, smem_bytes));
  return n > 0 ? n : 1;
}
unsigned persistent_grid(int64_t rows, int rows_per_block_step, int blocks_per_sm) {
  const int64_t need = ceil_div(rows, rows_per_block_step);
  const int64_t cap = static_cast<int64_t>(sm_count()) * blocks_per_sm;
  return static_cast<unsigned>(need < cap ? need : cap);
}

template <class L>
void forward_rows(void* out, float* rstd, const void* x, const float* gains, int64_t rows, int channels,
                  float eps) {
  using T = typename L::T;
  static const int per_sm = resident_blocks(rmsnorm_forward_rows<L>, 0);
  const unsigned blocks = persistent_grid(rows, L::kRowsPerBlockStep, per_sm);
  rmsnorm_forward_rows<L><<<blocks, kThreads, 0, stream()>>>(static_cast<T*>(out), rstd, static_cast<const T*>(x),
                                                             gains, rows, channels, eps);
  CUDA_CHECK_LAUNCH();
}

template <class L>
void residual_forward_rows(void* sum, void* out, float* rstd, const void* a, const void* b, const float* gains,
                           int64_t rows, int channels, float eps) {
  using T = typename L::T;
  static const int per_sm = resident_blocks(residual_rmsnorm_forward_rows<L>, 0);
  const unsigned blocks = persistent_grid(rows, L::kRowsPerBlockStep, per_sm);
  residual_rmsnorm_forward_rows<L><<<blocks, kThreads, 0, stream()>>>(
      static_cast<T*>(sum), static_cast<T*>(out), rstd, static_cast<const T*>(a), static_cast<const T*>(b), gains,
      rows, channels, eps);
  CUDA_CHECK_LAUNCH();
}

template <class L>
void backward_rows(void* dx, float* dgains, const void* dout, const void* x, const float* gains, const float* rstd,
                   int64_t rows, int channels, bool accumulate_dx) {
  using T = typename L::T;
  static const int per_sm = resident_blocks(rmsnorm_backward_rows<L>, L::kMaxSmemBytes);
  const unsigned blocks = persistent_grid(rows, L::kRowsPerBlockStep, per_sm);
  float* partial = nullptr;
  size_t smem = 0;
  if (dgains) {
    partial = static_cast<float*>(workspace(sizeof(float) * blocks * static_cast<size_t>(channels)));
    smem = sizeof(float) * L::kGroupsPerBlock * static_cast<size_t>(channels);
  }
  rmsnorm_backward_rows<L><<<blocks, kThreads, smem, stream()>>>(
      static_cast<T*>(dx), partial, static_cast<const T*>(dout), static_cast<const T*>(x), gains, rstd, rows,
      channels, accumulate_dx);
  CUDA_CHECK_LAUNCH();
  if (!dgains) return;
  rmsnorm_dgains_finish<<<static_cast<unsigned>(ceil_div(channels, 32)), dim3(32, 8), 0, stream()>>>(
      dgains, partial, static_cast<int>(blocks), channels);
  CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Calls fn(Layout<T, ...>{}) for the one-pass layout that fits `channels` and returns true,
// or returns false (the legacy kernels then run). The row is L = C / V vectors: up to 8, 16
// or 32 vectors take one sweep of a group of 8, 16 or 32 lanes, two rows at a time; longer
// rows take N sweeps of the whole warp.
template <class T, class Fn>
bool with_layout(int64_t channels, Fn&& fn) {
  constexpr int V = Vec16<T>::V;
  if (channels <= 0 || channels % V != 0) return false;
  const int64_t vectors = channels / V;
  if (vectors <= 8) return fn(Layout<T, 8, 1, 2>{}), true;
  if (vectors <= 16) return fn(Layout<T, 16, 1, 2>{}), true;
  if (vectors <= 32) return fn(Layout<T, 32, 1, 2>{}), true;
  if (vectors <= 64) return fn(Layout<T, 32, 2, 1>{}), true;
  if (vectors <= 96) return fn(Layout<T, 32, 3, 1>{}), true;  // bf16 C = 768
  if (vectors <= 128) return fn(Layout<T, 32, 4, 1>{}), true;
  if constexpr (V == 4) {  // f32: up to 32 floats per lane, as bf16's N = 4
    if (vectors <= 192) return fn(Layout<T, 32, 6, 1>{}), true;  // f32 C = 768
    if (vectors <= 256) return fn(Layout<T, 32, 8, 1>{}), true;
  }
  return false;
}

bool one_pass_fits(std::initializer_list<const void*> pointers) {
  if (rmsnorm_kernel() != RmsNormKernel::fast) return false;
  for (const void* p : pointers) {
    if (p && !aligned16(p)) return false;
  }
  return true;
}

RmsNormKernel kernel_from_environment() {
  const char* value = std::getenv("SPEEDRUN_RMSNORM");  // <stdlib.h>: nvcc's cuda_runtime.h
  const std::string v = value ? value : "";
  if (v.empty() || v == "legacy") return RmsNormKernel::legacy;
  if (v == "fast") return RmsNormKernel::fast;
  throw UserError("SPEEDRUN_RMSNORM=" + v + ": expected fast, legacy or nothing (environment variable)");
}

int kernel_override = -1;  // -1: none; else a RmsNormKernel

NormFusion fusion_from_environment() {
  const char* value = std::getenv("SPEEDRUN_FUSE_NORMS");
  const std::string v = value ? value : "";
  if (v.empty() || v == "0") return NormFusion::off;
  if (v == "1") return NormFusion::on;
  throw UserError("SPEEDRUN_FUSE_NORMS=" + v + ": expected 1, 0 or nothing (environment variable)");
}

int fusion_override = -1;  // -1: none; else a NormFusion

}  // namespace

RmsNormKernel rmsnorm_kernel() {
  static const RmsNormKernel from_environment = kernel_from_environment();
  return kernel_override < 0 ? from_environment : static_cast<RmsNormKernel>(kernel_override);
}

RmsNormKernel set_rmsnorm_kernel(RmsNormKernel kernel) {
  const RmsNormKernel previous = rmsnorm_kernel();
  kernel_override = static_cast<int>(kernel);
  return previous;
}

void rmsnorm_forward(DType act, void* out, float* rstd, const void* x, const float* gains, int64_t rows,
                     int64_t channels, float eps) {
  if (rows <= 0) return;
  with_act(act, "rmsnorm_forward", [&]<class T>(std::type_identity<T>) {
    if (one_pass_fits({out, x}) && with_layout<T>(channels, [&]<class L>(L) {
          forward_rows<L>(out, rstd, x, gains, rows, static_cast<int>(channels), eps);
        })) {
      return;
    }
    const unsigned blocks = static_cast<unsigned>(ceil_div(rows, kRowsPerBlock));
    rmsnorm_forward_kernel<T><<<blocks, kRowsPerBlock * 32, 0, stream()>>>(
        static_cast<T*>(out), rstd, static_cast<const T*>(x), gains, rows, channels, eps);
    CUDA_CHECK_LAUNCH();
  });
}

NormFusion norm_fusion() {
  static const NormFusion from_environment = fusion_from_environment();
  return fusion_override < 0 ? from_environment : static_cast<NormFusion>(fusion_override);
}

NormFusion set_norm_fusion(NormFusion fusion) {
  const NormFusion previous = norm_fusion();
  fusion_override = static_cast<int>(fusion);
  return previous;
}

bool residual_rmsnorm_fuses(DType act, int64_t channels, std::initializer_list<const void*> pointers) {
  if (norm_fusion() != NormFusion::on) return false;
  for (const void* p : pointers) {
    if (!aligned16(p)) return false;
  }
  bool fits = false;
  with_act(act, "residual_rmsnorm_forward", [&]<class T>(std::type_identity<T>) {
    fits = with_layout<T>(channels, [](auto) {});
  });
  return fits;
}

void residual_rmsnorm_forward(DType act, void* sum, void* out, float* rstd, const void* a, const void* b,
                              const float* gains, int64_t rows, int64_t channels, float eps) {
  if (rows <= 0) return;
  if (residual_rmsnorm_fuses(act, channels, {sum, out, a, b})) {
    with_act(act, "residual_rmsnorm_forward", [&]<class T>(std::type_identity<T>) {
      with_layout<T>(channels, [&]<class L>(L) {
        residual_forward_rows<L>(sum, out, rstd, a, b, gains, rows, static_cast<int>(channels), eps);
      });
    });
    return;
  }
  residual_forward(act, sum, a, b, rows * channels);
  rmsnorm_forward(act, out, rstd, sum, gains, rows, channels, eps);
}

void rmsnorm_backward(DType act, void* dx, float* dgains, const void* dout, const void* x, const float* gains,
                      const float* rstd, int64_t rows, int64_t channels, bool accumulate_dx) {
  if (rows <= 0) return;
  with_act(act, "rmsnorm_backward", [&]<class T>(std::type_identity<T>) {
    if (one_pass_fits({dx, dout, x}) && with_layout<T>(channels, [&]<class L>(L) {
          backward_rows<L>(dx, dgains, dout, x, gains, rstd, rows, static_cast<int>(channels), accumulate_dx);
        })) {
      return;
    }
    // dgains first: dx may alias dout, and the stream orders the two launches.
    if (dgains) {
      add_column_sums(dgains, GainsGradValue<T>{static_cast<const T*>(dout), static_cast<const T*>(x), rstd, channels},
                      rows, channels);
    }
    if (!dx) return;
    const unsigned blocks = static_cast<unsigned>(ceil_div(rows, kRowsPerBlock));
    rmsnorm_backward_kernel<T><<<blocks, kRowsPerBlock * 32, 0, stream()>>>(
        static_cast<T*>(dx), static_cast<const T*>(dout), static_cast<const T*>(x), gains, rstd, rows, channels,
        accumulate_dx);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace speedrun::cuda
