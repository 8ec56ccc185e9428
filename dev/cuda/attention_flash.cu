// Standalone check and benchmark of the FlashAttention-2-class kernels
// (kernels/ops/attention_flash.cu), in the spirit of llm.c's dev/cuda/*.cu: one executable,
// no test framework, needs a CUDA device.
//
//   dev_attention_flash [--seed N] [--no-bench] [--reps N]
//
// For each shape below it makes fresh random bf16 q, k, v, dout (standard normal, rounded to
// bf16; the seed is printed, --seed replays it), runs a naive reference on the device (fp64
// accumulation from the same bf16 values, causal mask written independently of the kernels'
// mask struct), then the flash forward and backward AND today's tensor-core kernels
// (cuda::attention_forward_tc / attention_backward_tc, kernels/attention_tc.cu), every output
// poisoned with NaN first, and compares out, lse, dq, dk, dv with the tolerances below.
// Then it times both implementations (CUDA events, median of --reps after 3 warm-up calls)
// at the benchmark shapes and prints ms and TFLOP/s, counting causal FLOPs as half:
// forward 4 B H T^2 D / 2, backward 2.5 x that (five T x T x D products instead of two).
//
// Tolerances (bf16 has 8 significant bits: one rounding is at most 2^-9 relative). Per
// tensor, with ref the fp64-accumulated reference:
//   out, dv:  max |got - ref| <= 2^-6 max |ref|  and  rms(got - ref) <= 2^-8 rms(ref):
//             P (or P^T) is rounded to bf16 before the product, the output once more.
//   dq, dk:   max <= 2^-5 max |ref|, rms <= 2^-7 rms(ref): dS = P (dP - delta) is rounded to
//             bf16 after a difference that cancels, delta comes from the bf16 out.
//   lse:      max |got - ref| <= 2^-10 absolute (fp32 statistics of exact bf16 products).
// A NaN anywhere fails (the comparisons are written so that NaN is never <= a bound), and
// so does an element not written (poisoned with NaN). Negative control: before trusting the
// checker, the first shape's flash out with one element moved by 4 x its bound must fail.
// Exit status: 0 all checks pass, 1 a check failed or a CUDA error, 2 usage.
//
// NOT YET RUN ON A GPU (written and compiled on a machine without one).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/ops/attention_flash.h"
#include "kernels/ops/ops_cuda.h"

namespace {

using bf16 = __nv_bfloat16;

struct Shape {
  const char* name;
  int64_t batch, seq, heads, head_dim;
  float scale;
  bool bench;
};

// Track 3 (B 64, T 1024, 6 heads of 128, scale 0.12), head_dim 64, T not a multiple of the
// tiles (forward 128 rows, backward 128 keys / 64 queries), one past a tile, shorter than a
// tile, a single position, a single (batch, head).
const Shape kShapes[] = {
    {"track3 B64 T1024 H6 D128", 64, 1024, 6, 128, 0.12f, true},
    {"hd64 B8 T1024 H12 D64", 8, 1024, 12, 64, 0.125f, true},
    {"T1000 B3 H2 D128", 3, 1000, 2, 128, 0.12f, false},
    {"T129 B2 H4 D128", 2, 129, 4, 128, 0.0883883f, false},
    {"T77 B2 H3 D64", 2, 77, 3, 64, 0.12f, false},
    {"T200 B1 H1 D128", 1, 200, 1, 128, 0.12f, false},
    {"T1 B1 H2 D64", 1, 1, 2, 64, 0.12f, false},
};

// ---- random bf16 on the device: a counter hash (splitmix64) and Box-Muller -----------------
__device__ uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
__global__ void fill_normal(bf16* x, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = splitmix(seed ^ splitmix(static_cast<uint64_t>(i)));
    const double u1 = (static_cast<double>(r >> 40) + 1.0) / 16777217.0;  // (0, 1]
    const double u2 = static_cast<double>(r & 0xFFFFFFull) / 16777216.0;
    x[i] = __float2bfloat16_rn(static_cast<float>(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2)));
  }
}

// ---- reference (fp64 accumulation; causal written out: key s visible to query t iff s <= t) --
__device__ bool ref_visible(int64_t t, int64_t s) { return s <= t; }
__device__ double bf(const bf16* p, int64_t i) { return static_cast<double>(__bfloat162float(p[i])); }

// Block-wide max / sum of one double per thread (blockDim.x = 128); red has 128 doubles.
__device__ double block_reduce(double v, double* red, bool is_max) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int o = 64; o > 0; o >>= 1) {
    if (threadIdx.x < o) {
      red[threadIdx.x] = is_max ? fmax(red[threadIdx.x], red[threadIdx.x + o]) : red[threadIdx.x] + red[threadIdx.x + o];
    }
    __syncthreads();
  }
  const double r = red[0];
  __syncthreads();
  return r;
}

// grid (T, B H), 128 threads; shared: T doubles of probabilities + 128 of reduction.
__global__ void ref_forward(float* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int64_t seq,
                            int64_t heads, int64_t dim, float scale) {
  extern __shared__ double sh[];
  double* pr = sh;
  double* red = sh + seq;
  const int64_t t = blockIdx.x, bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const int64_t stride = heads * dim, base = (b * seq * heads + h) * dim;
  double mx = -INFINITY;
  for (int64_t s = threadIdx.x; s < seq; s += blockDim.x) {
    double x = -INFINITY;
    if (ref_visible(t, s)) {
      double d = 0;
      for (int64_t i = 0; i < dim; ++i) d += bf(q, base + t * stride + i) * bf(k, base + s * stride + i);
      x = static_cast<double>(scale) * d;
    }
    pr[s] = x;
    mx = fmax(mx, x);
  }
  mx = block_reduce(mx, red, true);
  double l = 0;
  for (int64_t s = threadIdx.x; s < seq; s += blockDim.x) {
    pr[s] = exp(pr[s] - mx);
    l += pr[s];
  }
  l = block_reduce(l, red, false);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    double o = 0;
    for (int64_t s = 0; s <= t; ++s) o += pr[s] * bf(v, base + s * stride + i);
    out[base + t * stride + i] = static_cast<float>(o / l);
  }
  if (threadIdx.x == 0) lse[bh * seq + t] = static_cast<float>(mx + log(l));
}

// delta[bh, t] = dout_t . out_t (the reference's fp32 out). grid (T, B H), 128 threads.
__global__ void ref_delta(double* delta, const bf16* dout, const float* out, int64_t seq, int64_t heads,
                          int64_t dim) {
  __shared__ double red[128];
  const int64_t t = blockIdx.x, bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const int64_t at = (b * seq * heads + h) * dim + t * heads * dim;
  double d = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) d += bf(dout, at + i) * static_cast<double>(out[at + i]);
  d = block_reduce(d, red, false);
  if (threadIdx.x == 0) delta[bh * seq + t] = d;
}

// p_ts = exp(scale q_t.k_s - lse_t), ds_ts = p_ts (dout_t.v_s - delta_t).
__device__ void ref_p_ds(double* p, double* ds, const bf16* q, const bf16* k, const bf16* v, const bf16* dout,
                         const float* lse, const double* delta, int64_t base, int64_t stride, int64_t bh, int64_t seq,
                         int64_t dim, float scale, int64_t t, int64_t s) {
  double qk = 0, dv = 0;
  for (int64_t i = 0; i < dim; ++i) {
    qk += bf(q, base + t * stride + i) * bf(k, base + s * stride + i);
    dv += bf(dout, base + t * stride + i) * bf(v, base + s * stride + i);
  }
  *p = exp(static_cast<double>(scale) * qk - static_cast<double>(lse[bh * seq + t]));
  *ds = *p * (dv - delta[bh * seq + t]);
}

// dq_t = scale sum_{s <= t} ds_ts k_s. grid (T, B H), 128 threads, shared T doubles.
__global__ void ref_dq(float* dq, const bf16* q, const bf16* k, const bf16* v, const bf16* dout, const float* lse,
                       const double* delta, int64_t seq, int64_t heads, int64_t dim, float scale) {
  extern __shared__ double sh[];
  const int64_t t = blockIdx.x, bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const int64_t stride = heads * dim, base = (b * seq * heads + h) * dim;
  for (int64_t s = threadIdx.x; s < seq; s += blockDim.x) {
    double p = 0, ds = 0;
    if (ref_visible(t, s)) ref_p_ds(&p, &ds, q, k, v, dout, lse, delta, base, stride, bh, seq, dim, scale, t, s);
    sh[s] = ds;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    double a = 0;
    for (int64_t s = 0; s < seq; ++s) {
      if (sh[s] != 0) a += sh[s] * bf(k, base + s * stride + i);  // the same s for every thread
    }
    dq[base + t * stride + i] = static_cast<float>(scale * a);
  }
}

// dk_s = scale sum_{t >= s} ds_ts q_t, dv_s = sum_{t >= s} p_ts dout_t. grid (T, B H), 128
// threads, shared 2 T doubles.
__global__ void ref_dkdv(float* dk, float* dv, const bf16* q, const bf16* k, const bf16* v, const bf16* dout,
                         const float* lse, const double* delta, int64_t seq, int64_t heads, int64_t dim, float scale) {
  extern __shared__ double sh[];
  double* ps = sh;
  double* dss = sh + seq;
  const int64_t s = blockIdx.x, bh = blockIdx.y, b = bh / heads, h = bh % heads;
  const int64_t stride = heads * dim, base = (b * seq * heads + h) * dim;
  for (int64_t t = threadIdx.x; t < seq; t += blockDim.x) {
    double p = 0, ds = 0;
    if (ref_visible(t, s)) ref_p_ds(&p, &ds, q, k, v, dout, lse, delta, base, stride, bh, seq, dim, scale, t, s);
    ps[t] = p;
    dss[t] = ds;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    double a = 0, c = 0;
    for (int64_t t = 0; t < seq; ++t) {
      if (ps[t] == 0 && dss[t] == 0) continue;  // masked (the same t for every thread)
      a += dss[t] * bf(q, base + t * stride + i);
      c += ps[t] * bf(dout, base + t * stride + i);
    }
    dk[base + s * stride + i] = static_cast<float>(scale * a);
    dv[base + s * stride + i] = static_cast<float>(c);
  }
}

// ---- host helpers ------------------------------------------------------------------------------
template <class T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) { CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(count, 1) * sizeof(T))); }
  ~DeviceArray() { cudaFree(ptr); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  void poison() { CUDA_CHECK(cudaMemsetAsync(ptr, 0xFF, n * sizeof(T), speedrun::cuda::stream())); }  // all-ones: NaN in bf16 and fp32
  std::vector<float> to_host() const {
    std::vector<T> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> f(n);
    for (size_t i = 0; i < n; ++i) {
      if constexpr (std::is_same_v<T, bf16>) f[i] = __bfloat162float(h[i]);
      else f[i] = static_cast<float>(h[i]);
    }
    return f;
  }
};

struct Tolerance {
  double max_rel;  // of max |ref|; or absolute when absolute is set
  double rms_rel;  // of rms(ref); ignored when absolute
  bool absolute;
};
constexpr Tolerance kTolOut{1.0 / 64, 1.0 / 256, false};
constexpr Tolerance kTolGrad{1.0 / 32, 1.0 / 128, false};
constexpr Tolerance kTolLse{1.0 / 1024, 0, true};

// Compares got with ref; prints one line; true when within the tolerance (false on NaN).
bool compare(const char* impl, const char* what, const std::vector<float>& got, const std::vector<float>& ref,
             const Tolerance& tol, bool quiet = false) {
  double max_err = 0, max_ref = 0, sq_err = 0, sq_ref = 0;
  size_t nan = 0, worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (!(e <= max_err)) {  // also catches NaN once
      if (std::isnan(e)) ++nan;
      else { max_err = e; worst = i; }
    }
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
    if (!std::isnan(e)) sq_err += e * e;
    sq_ref += static_cast<double>(ref[i]) * ref[i];
  }
  const double n = std::max<double>(1, static_cast<double>(ref.size()));
  const double rms_err = std::sqrt(sq_err / n), rms_ref = std::sqrt(sq_ref / n);
  const double max_bound = tol.absolute ? tol.max_rel : tol.max_rel * max_ref;
  const double rms_bound = tol.absolute ? INFINITY : tol.rms_rel * rms_ref;
  const bool ok = nan == 0 && max_err <= max_bound && rms_err <= rms_bound;
  if (!quiet) {
    std::printf("    %-6s %-4s max|err| %.3e (bound %.3e, at %zu)  rms err %.3e (bound %.3e)  NaN %zu  %s\n", impl, what,
                max_err, max_bound, worst, rms_err, rms_bound, nan, ok ? "ok" : "FAIL");
  }
  return ok;
}

struct Tensors {
  size_t n, rows;
  DeviceArray<bf16> q, k, v, dout, out, dq, dk, dv;
  DeviceArray<float> lse;
  explicit Tensors(const Shape& s)
      : n(static_cast<size_t>(s.batch * s.seq * s.heads * s.head_dim)),
        rows(static_cast<size_t>(s.batch * s.seq * s.heads)),
        q(n), k(n), v(n), dout(n), out(n), dq(n), dk(n), dv(n), lse(rows) {}
};

using FwdFn = void (*)(void*, float*, const void*, const void*, const void*, int64_t, int64_t, int64_t, int64_t, float);
using BwdFn = void (*)(void*, void*, void*, const void*, const void*, const void*, const void*, const void*,
                       const float*, int64_t, int64_t, int64_t, int64_t, float);

void run_forward(FwdFn fn, Tensors& x, const Shape& s) {
  fn(x.out.ptr, x.lse.ptr, x.q.ptr, x.k.ptr, x.v.ptr, s.batch, s.seq, s.heads, s.head_dim, s.scale);
}
void run_backward(BwdFn fn, Tensors& x, const Shape& s) {
  fn(x.dq.ptr, x.dk.ptr, x.dv.ptr, x.dout.ptr, x.q.ptr, x.k.ptr, x.v.ptr, x.out.ptr, x.lse.ptr, s.batch, s.seq,
     s.heads, s.head_dim, s.scale);
}

struct Reference {
  std::vector<float> out, lse, dq, dk, dv;
};

Reference reference(Tensors& x, const Shape& s) {
  DeviceArray<float> out(x.n), lse(x.rows), dq(x.n), dk(x.n), dv(x.n);
  DeviceArray<double> delta(x.rows);
  const dim3 grid(static_cast<unsigned>(s.seq), static_cast<unsigned>(s.batch * s.heads));
  const size_t sh1 = (static_cast<size_t>(s.seq) + 128) * sizeof(double), sh2 = 2 * s.seq * sizeof(double);
  for (auto kernel : {reinterpret_cast<const void*>(ref_forward), reinterpret_cast<const void*>(ref_dq),
                      reinterpret_cast<const void*>(ref_dkdv)}) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(sh2 + sh1)));
  }
  ref_forward<<<grid, 128, sh1, speedrun::cuda::stream()>>>(out.ptr, lse.ptr, x.q.ptr, x.k.ptr, x.v.ptr, s.seq, s.heads, s.head_dim, s.scale);
  CUDA_CHECK_LAUNCH();
  ref_delta<<<grid, 128, 0, speedrun::cuda::stream()>>>(delta.ptr, x.dout.ptr, out.ptr, s.seq, s.heads, s.head_dim);
  CUDA_CHECK_LAUNCH();
  ref_dq<<<grid, 128, s.seq * sizeof(double), speedrun::cuda::stream()>>>(dq.ptr, x.q.ptr, x.k.ptr, x.v.ptr, x.dout.ptr, lse.ptr, delta.ptr,
                                                s.seq, s.heads, s.head_dim, s.scale);
  CUDA_CHECK_LAUNCH();
  ref_dkdv<<<grid, 128, sh2, speedrun::cuda::stream()>>>(dk.ptr, dv.ptr, x.q.ptr, x.k.ptr, x.v.ptr, x.dout.ptr, lse.ptr, delta.ptr, s.seq,
                               s.heads, s.head_dim, s.scale);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cudaDeviceSynchronize());
  return {out.to_host(), lse.to_host(), dq.to_host(), dk.to_host(), dv.to_host()};
}

// Runs one implementation (poisoned outputs first) and compares everything with ref.
bool validate(const char* impl, FwdFn fwd, BwdFn bwd, Tensors& x, const Shape& s, const Reference& ref,
              bool negative_control) {
  x.out.poison();
  x.lse.poison();
  x.dq.poison();
  x.dk.poison();
  x.dv.poison();
  run_forward(fwd, x, s);
  run_backward(bwd, x, s);
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> out = x.out.to_host();
  bool ok = compare(impl, "out", out, ref.out, kTolOut);
  ok &= compare(impl, "lse", x.lse.to_host(), ref.lse, kTolLse);
  ok &= compare(impl, "dq", x.dq.to_host(), ref.dq, kTolGrad);
  ok &= compare(impl, "dk", x.dk.to_host(), ref.dk, kTolGrad);
  ok &= compare(impl, "dv", x.dv.to_host(), ref.dv, kTolOut);
  if (negative_control) {
    // One element moved by 4 x the max bound must fail, or the checker proves nothing.
    double max_ref = 0;
    for (float r : ref.out) max_ref = std::max(max_ref, std::fabs(static_cast<double>(r)));
    std::vector<float> bad = ref.out;
    bad[bad.size() / 2] += static_cast<float>(4 * kTolOut.max_rel * max_ref);
    const bool caught = !compare(impl, "out", bad, ref.out, kTolOut, true);
    std::printf("    negative control (one element of out off by 4 x the bound): %s\n",
                caught ? "caught" : "NOT CAUGHT");
    ok &= caught;
  }
  return ok;
}

float median_ms(const std::vector<float>& v) {
  std::vector<float> s = v;
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

template <class Fn>
float time_ms(Fn&& fn, int reps) {
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) fn();
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(a, speedrun::cuda::stream()));
    fn();
    CUDA_CHECK(cudaEventRecord(b, speedrun::cuda::stream()));
    CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  return median_ms(ms);
}

void bench(Tensors& x, const Shape& s, int reps) {
  const double fwd_flop = 4.0 * s.batch * s.heads * static_cast<double>(s.seq) * s.seq * s.head_dim / 2;
  const double bwd_flop = 2.5 * fwd_flop;
  struct Impl {
    const char* name;
    FwdFn fwd;
    BwdFn bwd;
  };
  const Impl impls[] = {{"flash", speedrun::cuda::attention_flash_forward, speedrun::cuda::attention_flash_backward},
                        {"tc", speedrun::cuda::attention_forward_tc, speedrun::cuda::attention_backward_tc}};
  std::printf("  benchmark (median of %d, causal FLOPs halved: fwd %.3g, bwd %.3g FLOP)\n", reps, fwd_flop, bwd_flop);
  for (const Impl& im : impls) {
    run_forward(im.fwd, x, s);  // out, lse for the backward
    const float f = time_ms([&] { run_forward(im.fwd, x, s); }, reps);
    const float b = time_ms([&] { run_backward(im.bwd, x, s); }, reps);
    std::printf("    %-6s forward %8.3f ms %7.1f TFLOP/s   backward %8.3f ms %7.1f TFLOP/s\n", im.name, f,
                fwd_flop / (f * 1e9), b, bwd_flop / (b * 1e9));
  }
}

int usage(const char* msg) {
  std::fprintf(stderr, "dev_attention_flash: %s\nusage: dev_attention_flash [--seed N] [--no-bench] [--reps N]\n", msg);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = std::random_device{}();
  bool do_bench = true;
  int reps = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    char* end = nullptr;
    if (a == "--seed") {
      const char* v = value();
      if (!v) return usage("--seed needs a value");
      seed = std::strtoull(v, &end, 10);
      if (*v == '\0' || *end != '\0') return usage(std::string("--seed ").append(v).append(": not a number").c_str());
    } else if (a == "--reps") {
      const char* v = value();
      if (!v) return usage("--reps needs a value");
      const long r = std::strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0' || r < 1 || r > 10000) {
        return usage(std::string("--reps ").append(v).append(": expected 1..10000").c_str());
      }
      reps = static_cast<int>(r);
    } else if (a == "--no-bench") {
      do_bench = false;
    } else {
      return usage(("unknown argument " + a).c_str());
    }
  }
  try {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      std::fprintf(stderr, "dev_attention_flash: no CUDA device\n");
      return 1;
    }
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("dev_attention_flash: %s (sm_%d%d), seed %llu (--seed %llu replays)\n", prop.name, prop.major,
                prop.minor, static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
    bool all_ok = true;
    bool first = true;
    for (const Shape& s : kShapes) {
      std::printf("%s: B %lld T %lld H %lld D %lld scale %g\n", s.name, static_cast<long long>(s.batch),
                  static_cast<long long>(s.seq), static_cast<long long>(s.heads), static_cast<long long>(s.head_dim),
                  static_cast<double>(s.scale));
      Tensors x(s);
      uint64_t salt = 0;
      for (DeviceArray<bf16>* t : {&x.q, &x.k, &x.v, &x.dout}) {
        fill_normal<<<1024, 256, 0, speedrun::cuda::stream()>>>(t->ptr, static_cast<int64_t>(x.n), seed * 0x100000001B3ull + (++salt) * 7919 +
                                                                             static_cast<uint64_t>(&s - kShapes) * 104729);
        CUDA_CHECK_LAUNCH();
      }
      const Reference ref = reference(x, s);
      const bool flash_ok = validate("flash", speedrun::cuda::attention_flash_forward,
                                     speedrun::cuda::attention_flash_backward, x, s, ref, first);
      const bool tc_ok =
          validate("tc", speedrun::cuda::attention_forward_tc, speedrun::cuda::attention_backward_tc, x, s, ref, false);
      std::printf("  validation: flash %s, tc %s\n", flash_ok ? "PASS" : "FAIL", tc_ok ? "PASS" : "FAIL");
      all_ok &= flash_ok && tc_ok;
      first = false;
      if (do_bench && s.bench) bench(x, s, reps);
    }
    std::printf("dev_attention_flash: %s\n", all_ok ? "all checks pass" : "SOME CHECKS FAILED");
    return all_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dev_attention_flash: %s\n", e.what());
    return 1;
  }
}
