// The FP8 ops (ops.h, "FP8 emulation"): fp8_round and record #26's FP8 head product,
// emulated on the CPU so that the CUDA FP8 head (cuBLASLt) can be checked against it. CPU:
// ops/cpu/fp8.h; CUDA (the head's forward and backward; fp8_round stays CPU only):
// kernels/ops/fp8_head.cu. Tests: tests/unit/ops/test_fp8.cpp (CPU),
// tests/unit/test_cuda_fp8_head.cpp (CUDA against the CPU emulation).
#include <utility>
#include <vector>

#include "kernels/ops/ops_cuda.h"
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

// --- CUDA (kernels/ops/fp8_head.cu) -------------------------------------------------------------

// cuBLASLt's FP8 products need 16-byte aligned leading dimensions (one byte per element): every
// dimension of the head's three products is a leading dimension of some operand or output.
void check_fp8_dims(const Checker& check, int64_t n, int64_t c, int64_t v) {
  for (auto [name, value] : {std::pair<const char*, int64_t>{"rows N", n}, {"width C", c}, {"vocabulary V", v}})
    if (value % 16 != 0)
      check.fail(std::string("the CUDA FP8 head needs every dimension a multiple of 16 (cuBLASLt's FP8 products); ") +
                 name + " is " + std::to_string(value));
}

void check_floating_cuda(const Checker& check, detail::Arg a) {
  if (a.tensor.dtype != DType::f32 && a.tensor.dtype != DType::bf16)
    check.fail(std::string(a.name) + " has dtype " + dtype_name(a.tensor.dtype) + ", expected f32 or bf16");
}

void fp8_head_forward_cuda(const Checker& check, Tensor y, Tensor xq, Tensor wq, const Tensor& x, const Tensor& w,
                           const Fp8HeadScales& s, const Fp8HeadCuda& cu) {
  detail::cuda_prelude(check, DType::f32);
  check.ndim({"wq", wq}, 2);
  const int64_t n = x.rows(), c = wq.size(1), v = wq.size(0);
  check.dtype({"xq", xq}, DType::e4m3);
  check.dtype({"wq", wq}, DType::e4m3);
  check_floating_cuda(check, {"x", x});
  check_floating_cuda(check, {"y", y});
  check.matrix({"x", x}, n, c);
  check.matrix({"xq", xq}, n, c);
  check.matrix({"y", y}, n, v);
  check.dtype({"cuda.xqt", cu.xqt}, DType::e4m3);
  check.matrix({"cuda.xqt", cu.xqt}, c, n);
  if (!w.empty()) {
    check_floating_cuda(check, {"w", w});
    check.same_shape({"w", w}, {"wq", wq});
    check.dtype({"cuda.wqt", cu.wqt}, DType::e4m3);
    check.matrix({"cuda.wqt", cu.wqt}, c, v);
  }
  check_scale(check, "x_s", s.x_s);
  check_scale(check, "w_s", s.w_s);
  if (!s.saturate) check.fail("the CUDA FP8 head converts with .satfinite only (saturate = true)");
  check.same_device({{"y", y}, {"xq", xq}, {"wq", wq}, {"x", x}, {"w", w}, {"cuda.xqt", cu.xqt}, {"cuda.wqt", cu.wqt}});
  check_fp8_dims(check, n, c, v);
  const float xs = static_cast<float>(s.x_s), ws = static_cast<float>(s.w_s);
  cuda::fp8_quantize(DType::e4m3, xq.ptr, cu.xqt.ptr, x.dtype, x.ptr, n, c, xs, false);
  if (!w.empty()) cuda::fp8_quantize(DType::e4m3, wq.ptr, cu.wqt.ptr, w.dtype, w.ptr, v, c, ws, false);
  // _scaled_mm(x_f8, w_f8.T, scale_a = x_s, scale_b = w_s, out bf16, use_fast_accum = True)
  cuda::fp8_gemm_tn(y.dtype, y.ptr, DType::e4m3, xq.ptr, DType::e4m3, wq.ptr, n, v, c, xs * ws, 0.0f, true);
  if (y.dtype == DType::f32) cuda::round_to_bf16_values(y.data<float>(), n * v);
}

void fp8_head_backward_cuda(const Checker& check, Tensor dx, Tensor dw, const Tensor& dy, const Tensor& xq,
                            const Tensor& wq, const Fp8HeadScales& s, bool accumulate_dx, const Fp8HeadCuda& cu) {
  detail::cuda_prelude(check, DType::f32);
  check.ndim({"wq", wq}, 2);
  const int64_t n = xq.rows(), c = wq.size(1), v = wq.size(0);
  check.dtype({"xq", xq}, DType::e4m3);
  check.dtype({"wq", wq}, DType::e4m3);
  check.matrix({"xq", xq}, n, c);
  check_floating_cuda(check, {"dy", dy});
  check.matrix({"dy", dy}, n, v);
  check.dtype({"cuda.g", cu.g}, DType::e5m2);
  check.matrix({"cuda.g", cu.g}, n, v);
  check.dtype({"cuda.gt", cu.gt}, DType::e5m2);
  check.matrix({"cuda.gt", cu.gt}, v, n);
  if (!dx.empty()) {
    check_floating_cuda(check, {"dx", dx});
    check.matrix({"dx", dx}, n, c);
    check.dtype({"cuda.wqt", cu.wqt}, DType::e4m3);
    check.matrix({"cuda.wqt", cu.wqt}, c, v);
    if (accumulate_dx && dx.dtype != DType::bf16)
      check.fail("accumulate_dx needs a bf16 dx on CUDA (the sum is rounded once, in the product's epilogue)");
  }
  if (!dw.empty()) {
    check.dtype({"dw", dw}, DType::f32);
    check.same_shape({"dw", dw}, {"wq", wq});
    check.dtype({"cuda.xqt", cu.xqt}, DType::e4m3);
    check.matrix({"cuda.xqt", cu.xqt}, c, n);
  }
  check_scale(check, "x_s", s.x_s);
  check_scale(check, "w_s", s.w_s);
  check_scale(check, "grad_s", s.grad_s);
  if (!s.saturate) check.fail("the CUDA FP8 head converts with .satfinite only (saturate = true)");
  check.same_device({{"dx", dx}, {"dw", dw}, {"dy", dy}, {"xq", xq}, {"wq", wq}, {"cuda.g", cu.g},
                     {"cuda.gt", cu.gt}, {"cuda.wqt", cu.wqt}, {"cuda.xqt", cu.xqt}});
  check_fp8_dims(check, n, c, v);
  const float xs = static_cast<float>(s.x_s), ws = static_cast<float>(s.w_s), gs = static_cast<float>(s.grad_s);
  // grad.div(grad_s).to(float8_e5m2) of the bf16 gradient: dy rounded to bf16 first.
  cuda::fp8_quantize(DType::e5m2, cu.g.ptr, cu.gt.ptr, dy.dtype, dy.ptr, n, v, gs, true);
  if (!dx.empty()) {
    // dx (N, C) = g (N, V) . wqt (C, V)^T: _scaled_mm(grad_f8, w_f8, grad_s, w_s), out bf16
    cuda::fp8_gemm_tn(dx.dtype, dx.ptr, DType::e5m2, cu.g.ptr, DType::e4m3, cu.wqt.ptr, n, c, v, gs * ws,
                      accumulate_dx ? 1.0f : 0.0f, false);
    if (dx.dtype == DType::f32) cuda::round_to_bf16_values(dx.data<float>(), n * c);
  }
  // dw (V, C) += gt (V, N) . xqt (C, N)^T: upstream's _scaled_mm(x_f8^T, grad_f8, x_s, grad_s).T, f32
  if (!dw.empty())
    cuda::fp8_gemm_tn(DType::f32, dw.ptr, DType::e5m2, cu.gt.ptr, DType::e4m3, cu.xqt.ptr, v, c, n, xs * gs, 1.0f,
                      false);
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

void fp8_head_forward(Tensor y, Tensor xq, Tensor wq, const Tensor& x, const Tensor& w, const Fp8HeadScales& s,
                      const Fp8HeadCuda& cu) {
  const Checker check("fp8_head_forward");
  if (x.device == Device::cuda) {
    fp8_head_forward_cuda(check, y, xq, wq, x, w, s, cu);
    return;
  }
  for (detail::Arg a : {detail::Arg{"y", y}, {"xq", xq}, {"wq", wq}, {"x", x}}) check.dtype(a, DType::f32);
  if (!w.empty()) check.dtype({"w", w}, DType::f32);
  check.ndim({"wq", wq}, 2);
  const int64_t n = x.rows(), c = wq.size(1), v = wq.size(0);
  check.matrix({"x", x}, n, c);
  check.matrix({"xq", xq}, n, c);
  if (!w.empty()) check.same_shape({"w", w}, {"wq", wq});
  check.matrix({"y", y}, n, v);
  check_scale(check, "x_s", s.x_s);
  check_scale(check, "w_s", s.w_s);
  const Device device = check.same_device({{"y", y}, {"xq", xq}, {"wq", wq}, {"x", x}, {"w", w}});
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    round_all(xq.data<float>(), x.data<float>(), n * c, s.x_s, cpu::kE4M3, s.saturate);
    if (!w.empty()) round_all(wq.data<float>(), w.data<float>(), v * c, s.w_s, cpu::kE4M3, s.saturate);
    // _scaled_mm: the f32 accumulator times scale_a * scale_b (both f32), rounded to bf16.
    const float alpha = static_cast<float>(s.x_s) * static_cast<float>(s.w_s);
    float* out = y.data<float>();
    cpu::gemm(false, true, n, v, c, 1.0f, xq.data<float>(), c, wq.data<float>(), c, 0.0f, out, v);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n * v; ++i) out[i] = cpu::round_to_bf16(out[i] * alpha);
  });
}

void fp8_head_backward(Tensor dx, Tensor dw, const Tensor& dy, const Tensor& xq, const Tensor& wq,
                       const Fp8HeadScales& s, bool accumulate_dx, const Fp8HeadCuda& cu) {
  const Checker check("fp8_head_backward");
  if (dy.device == Device::cuda) {
    fp8_head_backward_cuda(check, dx, dw, dy, xq, wq, s, accumulate_dx, cu);
    return;
  }
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
