// The FP8 ops (ops.h, "FP8 emulation"): fp8_round and record #26's FP8 head product,
// emulated on the CPU so that the CUDA FP8 head (cuBLASLt) can be checked against it. CPU:
// ops/cpu/fp8.h; tests: tests/unit/ops/test_fp8.cpp. No CUDA branch: a CUDA tensor is
// refused (std::logic_error) by dispatch_float.
#include <vector>

#include "ops/cpu/fp8.h"
#include "ops/cpu/linear.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

namespace speedrun::ops {

using detail::Checker;

namespace {

void check_scale(const Checker& check, const char* name, double scale) {
  if (!(scale > 0.0) || !std::isfinite(static_cast<float>(scale)))
    check.fail(std::string(name) + " must be a positive finite f32 scale, got " + std::to_string(scale));
}

// dst[i] = fp8(src[i] / scale) over n elements (the quotient in f32).
void round_all(float* dst, const float* src, int64_t n, double scale, const cpu::Fp8Format& f, bool saturate) {
  const float sc = static_cast<float>(scale);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] = cpu::round_to_fp8(src[i] / sc, f, saturate);
}

}  // namespace

void fp8_round(Tensor out, const Tensor& x, double scale, Fp8Kind kind, bool saturate) {
  const Checker check("fp8_round");
  check.dtype({"x", x}, DType::f32);
  check.dtype({"out", out}, DType::f32);
  check.same_shape({"out", out}, {"x", x});
  check_scale(check, "scale", scale);
  const Device device = check.same_device({{"out", out}, {"x", x}});
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    round_all(out.data<float>(), x.data<float>(), x.numel(), scale, cpu::format_of(kind), saturate);
  });
}

void fp8_head_forward(Tensor y, Tensor xq, Tensor wq, const Tensor& x, const Tensor& w, const Fp8HeadScales& s) {
  const Checker check("fp8_head_forward");
  for (detail::Arg a : {detail::Arg{"y", y}, {"xq", xq}, {"wq", wq}, {"x", x}, {"w", w}}) check.dtype(a, DType::f32);
  check.ndim({"w", w}, 2);
  const int64_t n = x.rows(), c = w.size(1), v = w.size(0);
  check.matrix({"x", x}, n, c);
  check.matrix({"xq", xq}, n, c);
  check.same_shape({"wq", wq}, {"w", w});
  check.matrix({"y", y}, n, v);
  check_scale(check, "x_s", s.x_s);
  check_scale(check, "w_s", s.w_s);
  const Device device = check.same_device({{"y", y}, {"xq", xq}, {"wq", wq}, {"x", x}, {"w", w}});
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    round_all(xq.data<float>(), x.data<float>(), n * c, s.x_s, cpu::kE4M3, s.saturate);
    round_all(wq.data<float>(), w.data<float>(), v * c, s.w_s, cpu::kE4M3, s.saturate);
    // _scaled_mm: the f32 accumulator times scale_a * scale_b (both f32), rounded to bf16.
    const float alpha = static_cast<float>(s.x_s) * static_cast<float>(s.w_s);
    float* out = y.data<float>();
    cpu::gemm(false, true, n, v, c, 1.0f, xq.data<float>(), c, wq.data<float>(), c, 0.0f, out, v);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n * v; ++i) out[i] = cpu::round_to_bf16(out[i] * alpha);
  });
}

void fp8_head_backward(Tensor dx, Tensor dw, const Tensor& dy, const Tensor& xq, const Tensor& wq,
                       const Fp8HeadScales& s, bool accumulate_dx) {
  const Checker check("fp8_head_backward");
  for (detail::Arg a : {detail::Arg{"dy", dy}, {"xq", xq}, {"wq", wq}}) check.dtype(a, DType::f32);
  check.ndim({"wq", wq}, 2);
  const int64_t n = xq.rows(), c = wq.size(1), v = wq.size(0);
  check.matrix({"xq", xq}, n, c);
  check.matrix({"dy", dy}, n, v);
  if (!dx.empty()) {
    check.dtype({"dx", dx}, DType::f32);
    check.matrix({"dx", dx}, n, c);
  }
  if (!dw.empty()) {
    check.dtype({"dw", dw}, DType::f32);
    check.same_shape({"dw", dw}, {"wq", wq});
  }
  check_scale(check, "x_s", s.x_s);
  check_scale(check, "w_s", s.w_s);
  check_scale(check, "grad_s", s.grad_s);
  const Device device = check.same_device({{"dx", dx}, {"dw", dw}, {"dy", dy}, {"xq", xq}, {"wq", wq}});
  detail::dispatch_float(check, device, dy.dtype, [&]<class T>(std::type_identity<T>) {
    const float* d = dy.data<float>();
    std::vector<float> g(static_cast<size_t>(n * v));
    const float gs = static_cast<float>(s.grad_s);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n * v; ++i) g[i] = cpu::round_to_fp8(cpu::round_to_bf16(d[i]) / gs, cpu::kE5M2, s.saturate);
    if (!dx.empty()) {
      // grad_x = _scaled_mm(grad_f8, w_f8, scale_a = grad_s, scale_b = w_s), out bf16.
      std::vector<float> acc(static_cast<size_t>(n * c));
      cpu::gemm(false, false, n, c, v, 1.0f, g.data(), v, wq.data<float>(), c, 0.0f, acc.data(), c);
      const float alpha = gs * static_cast<float>(s.w_s);
      float* out = dx.data<float>();
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n * c; ++i) {
        const float r = cpu::round_to_bf16(acc[i] * alpha);
        out[i] = accumulate_dx ? out[i] + r : r;
      }
    }
    if (!dw.empty()) {
      // grad_w = _scaled_mm(x_f8^T, grad_f8, scale_a = x_s, scale_b = grad_s).T, out f32.
      std::vector<float> acc(static_cast<size_t>(v * c));
      cpu::gemm(true, false, v, c, n, 1.0f, g.data(), v, xq.data<float>(), c, 0.0f, acc.data(), c);
      const float alpha = static_cast<float>(s.x_s) * gs;
      float* out = dw.data<float>();
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < v * c; ++i) out[i] += acc[i] * alpha;
    }
  });
}

}  // namespace speedrun::ops
