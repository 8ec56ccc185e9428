// dev_rmsnorm: standalone check and benchmark of the RMSNorm kernels (kernels/ops/rmsnorm.cu),
// the legacy and the one-pass ("fast") ones side by side, through the backend's own entry
// points (cuda::rmsnorm_forward / rmsnorm_backward, switched with cuda::set_rmsnorm_kernel).
// In the spirit of llm.c's dev/cuda drivers: one file, random inputs, a CPU reference, a
// timing table.
//
//   dev_rmsnorm [--seed N] [--reps N] [--no-bench] [--no-validate]
//
// Validation: fresh random inputs (the seed is printed; --seed replays), a CPU reference in
// fp64 from exactly the values the device sees (bf16 inputs are rounded first), for the
// forward's out and rstd and the backward's dx (written, accumulated, in place) and dgains
// (accumulated onto random values; also alone, with dx null, and bitwise repeatable), on
// the Track 3 shapes and on shapes that exercise the masking and the fallbacks (see
// kCases). Every output is poisoned with NaN first. Each
// element must satisfy |got - want| <= tol (bounds below); the first violations are printed
// and the exit status is 1. Negative controls show that the bounds reject near misses.
//
// Tolerances (eps32 = 2^-24, u = the output's unit roundoff: 2^-8 for bf16, 2^-24 for f32;
// m = C / 8 + 16 bounds the additions in a row sum: at most C / 8 per lane, as a lane takes
// at least every 8th element in every kernel, plus the <= 5 shuffle levels and slack):
//  - rstd (f32):  (m + 8) eps32 |want|: a sum of positive terms is off by at most
//    m eps32 relative; the division, + eps, sqrt and reciprocal add a few roundings.
//  - out:         u |want| + (1 + u) E, E = (m + 11) eps32 |want|: the f32 value x r g
//    (rstd's error plus 2 products) rounded once to the output type.
//  - dx:          u |want| + (1 + u) E with E = 4 eps32 (r |u_i| + |k x_i|) +
//    (m + 4) eps32 r^3 |x_i| sum_j |u_j x_j| / C (+ eps32 |want| when accumulating): the
//    products and the difference, plus the dot product's error (signed terms: bounded by the
//    sum of magnitudes), which reaches every element through k x_i.
//  - dgains (f32): (mg + 2) eps32 (|old| + sum_n |dout x r|), mg = rows / min(256, 8 SMs) +
//    SMs + 48 bounds the additions on a column's path in either kernel (rows per lane, then
//    the block's groups, then the blocks, or the legacy 256-row chunks and their sum).
// The bounds are worst cases, not typical errors; the negative controls check that they
// still catch a gradient that misses 256 rows, an rstd that misses one channel, and a dx
// computed without the gains in u . x.
//
// Benchmark (not with --no-bench): the Track 3 shapes (65,536 rows of C = 768 with gains;
// QK-norm: 393,216 rows of head_dim 128 without gains), bf16 activations; for each kernel the
// median of --reps timed calls (CUDA events, after 3 warm-up calls), the bytes the op must
// move at least (inputs read once, outputs written once; the dgains scratch is not counted),
// GB/s, and the percentage of the device-to-device copy bandwidth measured in the same run
// (cudaMemcpyAsync of 256 MiB, counted as read + write).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/ops/ops_cuda.h"

namespace {

using speedrun::DType;
using speedrun::cuda::RmsNormKernel;
namespace sc = speedrun::cuda;

constexpr double kEps32 = 1.0 / 16777216.0;  // 2^-24
constexpr float kNormEps = 1.0f / 128;       // the Track 3 configs' rmsnorm_eps

const char* kernel_name(RmsNormKernel k) { return k == RmsNormKernel::fast ? "fast" : "legacy"; }

// ---- host values and device buffers ----------------------------------------------------------
float round_to(DType t, float v) { return t == DType::bf16 ? __bfloat162float(__float2bfloat16_rn(v)) : v; }

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : bytes(std::max<size_t>(n, 16)) { CUDA_CHECK(cudaMalloc(&ptr, bytes)); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void poison() const { CUDA_CHECK(cudaMemset(ptr, 0xff, bytes)); }  // NaN in f32 and bf16
};

// Writes n values as dtype t at byte offset `offset` of buf.
void upload(const DeviceBuffer& buf, DType t, const std::vector<float>& v, size_t offset = 0) {
  if (t == DType::bf16) {
    std::vector<__nv_bfloat16> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = __float2bfloat16_rn(v[i]);
    CUDA_CHECK(cudaMemcpy(static_cast<char*>(buf.ptr) + offset, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  } else {
    CUDA_CHECK(cudaMemcpy(static_cast<char*>(buf.ptr) + offset, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  }
}
std::vector<float> download(const void* p, DType t, size_t n) {
  std::vector<float> v(n);
  if (t == DType::bf16) {
    std::vector<__nv_bfloat16> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) v[i] = __bfloat162float(h[i]);
  } else {
    CUDA_CHECK(cudaMemcpy(v.data(), p, n * 4, cudaMemcpyDeviceToHost));
  }
  return v;
}

// ---- comparison -------------------------------------------------------------------------------
// Counts the elements with !(|got - want| <= tol) (NaN fails) and prints the first few.
struct Check {
  std::string what;
  int64_t bad = 0;
  double worst = 0.0;  // max |got - want| / tol
};
Check compare(const std::string& what, const std::vector<float>& got, const std::vector<double>& want,
              const std::vector<double>& tol, bool quiet = false) {
  Check c{what};
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double ratio = tol[i] > 0 ? err / tol[i] : (err == 0 ? 0.0 : INFINITY);
    if (!(err <= tol[i])) {
      if (c.bad < 5 && !quiet) {
        std::printf("    MISMATCH %s [%zu]: got %.9g want %.9g tol %.3g\n", what.c_str(), i, got[i], want[i],
                    tol[i]);
      }
      ++c.bad;
      c.worst = std::isnan(ratio) ? INFINITY : std::max(c.worst, ratio);
    } else {
      c.worst = std::max(c.worst, ratio);
    }
  }
  return c;
}

// ---- fp64 reference ---------------------------------------------------------------------------
struct Inputs {
  int64_t rows = 0, C = 0;
  bool gains = false;
  std::vector<float> x, dy, g, old_dx, old_dg;  // exactly the values on the device
};

struct Reference {
  std::vector<double> out, rstd, out_tol, rstd_tol;
  std::vector<float> rstd32;  // the rstd handed to the backward, on both sides
  std::vector<double> dx, dx_tol, dx_acc, dx_acc_tol, dg, dg_tol;
};

double m_row(int64_t C) { return static_cast<double>(C) / 8 + 16; }

// drop_last_channel / skip_gains_in_dot / drop_rows: the negative controls' deliberate faults.
Reference reference(const Inputs& in, DType t, int sms, bool drop_last_channel = false,
                    bool skip_gains_in_dot = false, int64_t drop_rows = 0) {
  const int64_t R = in.rows, C = in.C;
  const double u = t == DType::bf16 ? 1.0 / 256 : kEps32, m = m_row(C);
  Reference ref;
  const size_t n = static_cast<size_t>(R * C);
  ref.out.resize(n), ref.out_tol.resize(n), ref.rstd.resize(R), ref.rstd_tol.resize(R), ref.rstd32.resize(R);
  ref.dx.resize(n), ref.dx_tol.resize(n), ref.dx_acc.resize(n), ref.dx_acc_tol.resize(n);
  ref.dg.assign(C, 0.0), ref.dg_tol.assign(C, 0.0);
  std::vector<double> dg_abs(C, 0.0);
  auto gain = [&](int64_t c) { return in.gains ? static_cast<double>(in.g[c]) : 1.0; };
  for (int64_t r = 0; r < R; ++r) {
    const float* x = &in.x[r * C];
    const float* dy = &in.dy[r * C];
    double ss = 0;
    for (int64_t c = 0; c < (drop_last_channel ? C - 1 : C); ++c) ss += static_cast<double>(x[c]) * x[c];
    const double rs = 1.0 / std::sqrt(ss / static_cast<double>(C) + kNormEps);
    ref.rstd[r] = rs;
    ref.rstd_tol[r] = (m + 8) * kEps32 * rs;
    for (int64_t c = 0; c < C; ++c) {
      const double want = x[c] * rs * gain(c);
      ref.out[r * C + c] = want;
      ref.out_tol[r * C + c] = u * std::fabs(want) + (1 + u) * (m + 11) * kEps32 * std::fabs(want);
    }
    // The backward takes the f32 rstd (as the model does); both sides use the same value.
    const float r32 = static_cast<float>(rs);
    ref.rstd32[r] = r32;
    const double rr = r32;
    double ux = 0, ux_abs = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double uc = dy[c] * (skip_gains_in_dot ? 1.0 : gain(c));
      ux += uc * x[c];
      ux_abs += std::fabs(uc * x[c]);
    }
    const double k = rr * rr * rr * ux / static_cast<double>(C);
    for (int64_t c = 0; c < C; ++c) {
      const size_t i = static_cast<size_t>(r * C + c);
      const double uc = dy[c] * gain(c);
      const double d = rr * uc - k * x[c];
      const double e = 4 * kEps32 * (rr * std::fabs(uc) + std::fabs(k * x[c])) +
                       (m + 4) * kEps32 * rr * rr * rr * std::fabs(x[c]) * ux_abs / static_cast<double>(C);
      ref.dx[i] = d;
      ref.dx_tol[i] = u * std::fabs(d) + (1 + u) * e;
      const double a = static_cast<double>(in.old_dx[i]) + d;
      ref.dx_acc[i] = a;
      ref.dx_acc_tol[i] = u * std::fabs(a) + (1 + u) * (e + kEps32 * std::fabs(a));
      if (r < R - drop_rows) ref.dg[c] += dy[c] * (static_cast<double>(x[c]) * rr);
      dg_abs[c] += std::fabs(dy[c] * (static_cast<double>(x[c]) * rr));
    }
  }
  const double mg = static_cast<double>(R) / std::min<int64_t>(256, 8 * static_cast<int64_t>(sms)) + sms + 48;
  for (int64_t c = 0; c < C; ++c) {
    ref.dg[c] += in.old_dg[c];
    ref.dg_tol[c] = (mg + 2) * kEps32 * (std::fabs(in.old_dg[c]) + dg_abs[c]);
  }
  return ref;
}

// ---- one validation case ----------------------------------------------------------------------
struct Case {
  const char* why;
  DType t;
  int64_t rows, C;
  bool gains;
  size_t misalign = 0;  // bytes added to every activation pointer (16-byte alignment lost)
};

// The Track 3 shapes, then shapes that reach every one-pass layout with masked vectors and
// rows, and the fallbacks to the legacy kernels (C not a multiple of the vector, C too long,
// unaligned pointers).
const Case kCases[] = {
    {"Track 3 model norm (bf16, N = 3 sweeps)", DType::bf16, 65536, 768, true},
    {"Track 3 QK-norm (bf16, 16-lane groups)", DType::bf16, 393216, 128, false},
    {"rows not a multiple of the block's rows", DType::bf16, 4099, 768, true},
    {"N = 2, second sweep part-masked (C = 384)", DType::bf16, 2000, 384, true},
    {"third sweep part-masked (L = 65 vectors)", DType::bf16, 1000, 520, true},
    {"8-lane groups, C = 64", DType::bf16, 777, 64, false},
    {"8-lane groups, masked (C = 40)", DType::bf16, 301, 40, true},
    {"one sweep, lanes 25..31 masked (C = 200)", DType::bf16, 33, 200, true},
    {"N = 4 (C = 1024)", DType::bf16, 515, 1024, true},
    {"fallback: C = 100 not a multiple of 8", DType::bf16, 50, 100, true},
    {"fallback: C = 2048 too long", DType::bf16, 20, 2048, true},
    {"fallback: pointers not 16-byte aligned", DType::bf16, 257, 768, true, 2},
    {"single row", DType::bf16, 1, 768, true},
    {"f32, N = 6 (C = 768)", DType::f32, 4099, 768, true},
    {"f32, one sweep masked (C = 100)", DType::f32, 1000, 100, true},
    {"f32, QK-norm C = 128", DType::f32, 777, 128, false},
    {"f32, N = 8 masked (C = 1000)", DType::f32, 70, 1000, true},
    {"f32 fallback: C = 1030", DType::f32, 9, 1030, true},
};

struct Validator {
  std::mt19937_64 rng;
  int sms = 1;
  int failures = 0;

  std::vector<float> draw(DType t, size_t n, double lo, double hi) {
    std::uniform_real_distribution<double> d(lo, hi);
    std::vector<float> v(n);
    for (float& e : v) e = round_to(t, static_cast<float>(d(rng)));
    return v;
  }

  Inputs inputs(const Case& k) {
    Inputs in;
    in.rows = k.rows, in.C = k.C, in.gains = k.gains;
    const size_t n = static_cast<size_t>(k.rows * k.C);
    // Rows of different scales (2^-2 .. 2^2), as activations have.
    in.x = draw(k.t, n, -1, 1);
    std::uniform_real_distribution<double> e(-2, 2);
    for (int64_t r = 0; r < k.rows; ++r) {
      const float s = static_cast<float>(std::exp2(e(rng)));
      for (int64_t c = 0; c < k.C; ++c) in.x[r * k.C + c] = round_to(k.t, in.x[r * k.C + c] * s);
    }
    in.dy = draw(k.t, n, -1, 1);
    in.g = draw(DType::f32, k.C, 0.5, 1.5);
    in.old_dx = draw(k.t, n, -1, 1);
    in.old_dg = draw(DType::f32, k.C, -1, 1);
    return in;
  }

  void record(const Check& c, RmsNormKernel kernel) {
    const bool ok = c.bad == 0;
    if (!ok) ++failures;
    std::printf("    %-7s %-30s %s  (worst |err|/tol %.3f%s)\n", kernel_name(kernel), c.what.c_str(),
                ok ? "ok  " : "FAIL", c.worst, ok ? "" : (", " + std::to_string(c.bad) + " elements").c_str());
  }

  void run(const Case& k, bool with_controls) {
    std::printf("  %s: %s rows=%lld C=%lld %s%s\n", k.why, speedrun::dtype_name(k.t), static_cast<long long>(k.rows),
                static_cast<long long>(k.C), k.gains ? "gains" : "no gains",
                k.misalign ? (" (pointers + " + std::to_string(k.misalign) + " bytes)").c_str() : "");
    const Inputs in = inputs(k);
    const Reference ref = reference(in, k.t, sms);
    const size_t n = static_cast<size_t>(k.rows * k.C), es = speedrun::dtype_size(k.t);
    const size_t off = k.misalign;
    DeviceBuffer x(n * es + off), dy(n * es + off), out(n * es + off), rstd(k.rows * 4), g(k.C * 4),
        dg(k.C * 4), rstd_in(k.rows * 4);
    upload(x, k.t, in.x, off);
    upload(dy, k.t, in.dy, off);
    upload(g, DType::f32, in.g);
    upload(rstd_in, DType::f32, ref.rstd32);
    char* const xp = static_cast<char*>(x.ptr) + off;
    char* const dyp = static_cast<char*>(dy.ptr) + off;
    char* const outp = static_cast<char*>(out.ptr) + off;
    const float* gp = k.gains ? static_cast<const float*>(g.ptr) : nullptr;
    for (RmsNormKernel kernel : {RmsNormKernel::legacy, RmsNormKernel::fast}) {
      sc::set_rmsnorm_kernel(kernel);
      // Forward.
      out.poison(), rstd.poison();
      sc::rmsnorm_forward(k.t, outp, static_cast<float*>(rstd.ptr), xp, gp, k.rows, k.C, kNormEps);
      record(compare("forward out", download(outp, k.t, n), ref.out, ref.out_tol), kernel);
      record(compare("forward rstd", download(rstd.ptr, DType::f32, k.rows), ref.rstd, ref.rstd_tol), kernel);
      // Backward, dx written, dgains accumulated onto random values.
      out.poison();
      upload(dg, DType::f32, in.old_dg);
      sc::rmsnorm_backward(k.t, outp, k.gains ? static_cast<float*>(dg.ptr) : nullptr, dyp, xp, gp,
                           static_cast<const float*>(rstd_in.ptr), k.rows, k.C, false);
      record(compare("backward dx", download(outp, k.t, n), ref.dx, ref.dx_tol), kernel);
      if (k.gains) {
        record(compare("backward dgains", download(dg.ptr, DType::f32, k.C), ref.dg, ref.dg_tol), kernel);
        // dgains alone (no dx wanted), twice from the same start: within the bound, and the
        // same bits both times (no atomics, a fixed order).
        std::vector<float> runs[2];
        for (std::vector<float>& got : runs) {
          upload(dg, DType::f32, in.old_dg);
          sc::rmsnorm_backward(k.t, nullptr, static_cast<float*>(dg.ptr), dyp, xp, gp,
                               static_cast<const float*>(rstd_in.ptr), k.rows, k.C, false);
          got = download(dg.ptr, DType::f32, k.C);
        }
        record(compare("backward dgains only (dx null)", runs[0], ref.dg, ref.dg_tol), kernel);
        Check same{"dgains bitwise repeatable"};
        same.bad = static_cast<int64_t>(k.C) -
                   std::inner_product(runs[0].begin(), runs[0].end(), runs[1].begin(), int64_t{0}, std::plus<>(),
                                      [](float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0 ? 1 : 0; });
        record(same, kernel);
      }
      // Backward, dx accumulated (the model's residual stream), no dgains.
      upload(out, k.t, in.old_dx, off);
      sc::rmsnorm_backward(k.t, outp, nullptr, dyp, xp, gp, static_cast<const float*>(rstd_in.ptr), k.rows, k.C,
                           true);
      record(compare("backward dx accumulated", download(outp, k.t, n), ref.dx_acc, ref.dx_acc_tol), kernel);
      // In place: out = x (forward), dx = dout (backward); the inputs are rewritten after.
      sc::rmsnorm_forward(k.t, xp, static_cast<float*>(rstd.ptr), xp, gp, k.rows, k.C, kNormEps);
      record(compare("forward in place", download(xp, k.t, n), ref.out, ref.out_tol), kernel);
      upload(x, k.t, in.x, off);
      sc::rmsnorm_backward(k.t, dyp, nullptr, dyp, xp, gp, static_cast<const float*>(rstd_in.ptr), k.rows, k.C,
                           false);
      record(compare("backward dx in place", download(dyp, k.t, n), ref.dx, ref.dx_tol), kernel);
      upload(dy, k.t, in.dy, off);
    }
    if (with_controls) controls(in, k, ref);
  }

  // The bounds must reject deliberate faults of the size a real bug could have.
  void controls(const Inputs& in, const Case& k, const Reference& good) {
    auto expect_rejected = [&](const char* what, const std::vector<double>& faulty, const std::vector<double>& want,
                               const std::vector<double>& tol) {
      std::vector<float> got(faulty.begin(), faulty.end());
      const Check c = compare(what, got, want, tol, true);
      const bool ok = c.bad > 0;
      if (!ok) ++failures;
      std::printf("    control %-44s %s (%lld of %zu elements rejected)\n", what, ok ? "rejected, ok" : "NOT REJECTED",
                  static_cast<long long>(c.bad), want.size());
    };
    // One faulty reference at a time: at the Track 3 shape each holds ~2.4 GB.
    expect_rejected("rstd missing the last channel's square", reference(in, k.t, sms, true).rstd, good.rstd,
                    good.rstd_tol);
    if (!k.gains) return;
    expect_rejected("dx with u . x taken without the gains", reference(in, k.t, sms, false, true).dx, good.dx,
                    good.dx_tol);
    expect_rejected("dgains missing the last 256 rows", reference(in, k.t, sms, false, false, 256).dg, good.dg,
                    good.dg_tol);
  }
};

// ---- benchmark --------------------------------------------------------------------------------
double median_ms(int reps, const std::function<void()>& fn) {
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) fn();
  std::vector<float> ms(static_cast<size_t>(reps));
  for (float& m : ms) {
    CUDA_CHECK(cudaEventRecord(a, sc::stream()));
    fn();
    CUDA_CHECK(cudaEventRecord(b, sc::stream()));
    CUDA_CHECK(cudaEventSynchronize(b));
    CUDA_CHECK(cudaEventElapsedTime(&m, a, b));
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void bench(int reps) {
  const size_t copy_bytes = size_t{256} << 20;
  double copy_gbs = 0;
  {
    DeviceBuffer a(copy_bytes), b(copy_bytes);
    CUDA_CHECK(cudaMemset(a.ptr, 1, copy_bytes));
    const double ms = median_ms(reps, [&] {
      CUDA_CHECK(cudaMemcpyAsync(b.ptr, a.ptr, copy_bytes, cudaMemcpyDeviceToDevice, sc::stream()));
    });
    copy_gbs = 2.0 * copy_bytes / (ms * 1e-3) / 1e9;
    std::printf("\ndevice-to-device copy, 256 MiB: %.3f ms, %.0f GB/s (read + write): the ceiling below\n", ms,
                copy_gbs);
  }
  struct Op {
    const char* name;
    int64_t rows, C;
    bool gains, backward, dgains, accumulate;
  };
  const Op ops[] = {
      {"forward, C=768, gains", 65536, 768, true, false, false, false},
      {"backward, C=768, dx +=, dgains +=", 65536, 768, true, true, true, true},
      {"backward, C=768, dx =, dgains +=", 65536, 768, true, true, true, false},
      {"QK forward, D=128", 393216, 128, false, false, false, false},
      {"QK backward, D=128, dx =", 393216, 128, false, true, false, false},
  };
  std::printf("%-36s %-8s %9s %8s %7s\n", "op (bf16, Track 3 shapes)", "kernel", "ms", "GB/s", "% copy");
  bool met = true;
  for (const Op& op : ops) {
    const size_t n = static_cast<size_t>(op.rows * op.C);
    DeviceBuffer x(n * 2), dy(n * 2), out(n * 2), rstd(op.rows * 4), g(op.C * 4), dg(op.C * 4);
    std::mt19937_64 rng(12345);
    std::uniform_real_distribution<double> d(-1, 1);
    std::vector<float> hv(n);
    for (float& v : hv) v = static_cast<float>(d(rng));
    upload(x, DType::bf16, hv);
    upload(dy, DType::bf16, hv);
    upload(out, DType::bf16, hv);
    upload(g, DType::f32, std::vector<float>(op.C, 1.0f));
    CUDA_CHECK(cudaMemset(dg.ptr, 0, op.C * 4));
    sc::rmsnorm_forward(DType::bf16, out.ptr, static_cast<float*>(rstd.ptr), x.ptr, nullptr, op.rows, op.C,
                        kNormEps);  // a valid rstd for the backward
    // Least bytes moved: activations in and out, rstd, gains (the dgains scratch not counted).
    const double act = static_cast<double>(n) * 2;
    const double bytes = op.backward ? act * (op.accumulate ? 4 : 3) + op.rows * 4.0 + (op.gains ? op.C * 4.0 : 0) +
                                           (op.dgains ? op.C * 8.0 : 0)
                                     : act * 2 + op.rows * 4.0 + (op.gains ? op.C * 4.0 : 0);
    const float* gp = op.gains ? static_cast<const float*>(g.ptr) : nullptr;
    for (RmsNormKernel kernel : {RmsNormKernel::legacy, RmsNormKernel::fast}) {
      sc::set_rmsnorm_kernel(kernel);
      const double ms = median_ms(reps, [&] {
        if (op.backward) {
          sc::rmsnorm_backward(DType::bf16, out.ptr, op.dgains ? static_cast<float*>(dg.ptr) : nullptr, dy.ptr,
                               x.ptr, gp, static_cast<const float*>(rstd.ptr), op.rows, op.C, op.accumulate);
        } else {
          sc::rmsnorm_forward(DType::bf16, out.ptr, static_cast<float*>(rstd.ptr), x.ptr, gp, op.rows, op.C,
                              kNormEps);
        }
      });
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      std::printf("%-36s %-8s %9.4f %8.0f %6.1f%%\n", op.name, kernel_name(kernel), ms, gbs, 100 * gbs / copy_gbs);
      if (kernel == RmsNormKernel::fast && gbs < 0.7 * copy_gbs) met = false;
    }
  }
  std::printf("target (fast >= 70%% of the copy bandwidth on every row): %s\n", met ? "met" : "NOT met");
}

int usage(const char* why) {
  std::fprintf(stderr, "dev_rmsnorm: %s\nusage: dev_rmsnorm [--seed N] [--reps N] [--no-bench] [--no-validate]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = std::random_device{}();
  seed = (seed << 32) ^ std::random_device{}();
  int reps = 20;
  bool validate = true, benchmark = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seed" || a == "--reps") {
      if (i + 1 >= argc) return usage((a + " needs a value").c_str());
      const char* v = argv[++i];
      char* end = nullptr;
      const unsigned long long parsed = std::strtoull(v, &end, 10);
      if (*v == '\0' || *end != '\0' || *v == '-') return usage((a + " " + v + ": not a non-negative integer").c_str());
      if (a == "--seed") {
        seed = parsed;
      } else {
        if (parsed < 1 || parsed > 100000) return usage((a + " " + v + ": expected 1..100000").c_str());
        reps = static_cast<int>(parsed);
      }
    } else if (a == "--no-bench") {
      benchmark = false;
    } else if (a == "--no-validate") {
      validate = false;
    } else {
      return usage(("unknown argument " + a).c_str());
    }
  }
  try {
    int device = 0, sms = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    std::printf("dev_rmsnorm on %s (%d SMs); seed %llu (replay: --seed %llu)\n", prop.name, sms,
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
    int failures = 0;
    if (validate) {
      Validator v{std::mt19937_64(seed), sms};
      bool first_gains = true, first_plain = true;
      for (const Case& k : kCases) {
        bool& first = k.gains ? first_gains : first_plain;
        v.run(k, first);
        first = false;
      }
      failures = v.failures;
      std::printf("validation: %s (%d failed checks)\n", failures ? "FAILED" : "passed", failures);
    }
    if (benchmark) bench(reps);
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dev_rmsnorm: %s\n", e.what());
    return 1;
  }
}
