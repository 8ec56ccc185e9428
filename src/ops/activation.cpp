// The activation op (ops.h): ReLU^2 and the residual add. CPU: ops/cpu/activation.h;
// CUDA: kernels/ops/activation.cu; tests: tests/unit/ops/test_activation.cpp.
#include "ops/cpu/activation.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::ops {

using detail::Arg;
using detail::Checker;

namespace {

// Elementwise ops take tensors with the same rows x columns as the reference.
void check_like(const Checker& check, Arg reference, std::initializer_list<Arg> others) {
  check.floating(reference);
  check.ndim_at_least(reference, 1);
  for (const Arg& a : others) {
    if (a.tensor.empty()) continue;
    check.same_matrix(a, reference);
    check.same_dtype(a, reference);
  }
}

}  // namespace

void relu2_forward(Tensor out, const Tensor& x) {
  const Checker check("relu2_forward");
  check.present({"out", out});
  check_like(check, {"x", x}, {{"out", out}});
  const Device device = check.same_device({{"out", out}, {"x", x}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    cuda::relu2_forward(x.dtype, out.ptr, x.ptr, x.numel());
    return;
  }
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::relu2_forward(out.data<T>(), x.data<T>(), x.numel());
  });
}

void relu2_backward(Tensor dx, const Tensor& dout, const Tensor& x) {
  const Checker check("relu2_backward");
  check.present({"dx", dx});
  check.present({"dout", dout});
  check_like(check, {"x", x}, {{"dx", dx}, {"dout", dout}});
  const Device device = check.same_device({{"dx", dx}, {"dout", dout}, {"x", x}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    cuda::relu2_backward(x.dtype, dx.ptr, dout.ptr, x.ptr, x.numel());
    return;
  }
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::relu2_backward(dx.data<T>(), dout.data<T>(), x.data<T>(), x.numel());
  });
}

void relu2_backward_recompute(Tensor dx, Tensor g, const Tensor& dout, const Tensor& x) {
  const Checker check("relu2_backward_recompute");
  check.present({"dx", dx});
  check.present({"g", g});
  check.present({"dout", dout});
  check_like(check, {"x", x}, {{"dx", dx}, {"g", g}, {"dout", dout}});
  if (g.ptr == dout.ptr || g.ptr == dx.ptr) check.fail("g must not alias dout or dx (it may alias x)");
  const Device device = check.same_device({{"dx", dx}, {"g", g}, {"dout", dout}, {"x", x}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    cuda::relu2_backward_recompute(x.dtype, dx.ptr, g.ptr, dout.ptr, x.ptr, x.numel());
    return;
  }
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::relu2_backward_recompute(dx.data<T>(), g.data<T>(), dout.data<T>(), x.data<T>(), x.numel());
  });
}

void residual_forward(Tensor out, const Tensor& a, const Tensor& b) {
  const Checker check("residual_forward");
  check.present({"out", out});
  check.present({"b", b});
  check_like(check, {"a", a}, {{"b", b}, {"out", out}});
  const Device device = check.same_device({{"out", out}, {"a", a}, {"b", b}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, a.dtype);
    cuda::residual_forward(a.dtype, out.ptr, a.ptr, b.ptr, a.numel());
    return;
  }
  detail::dispatch_float(check, device, a.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::residual_forward(out.data<T>(), a.data<T>(), b.data<T>(), a.numel());
  });
}

void residual_backward(Tensor da, Tensor db, const Tensor& dout) {
  const Checker check("residual_backward");
  check_like(check, {"dout", dout}, {{"da", da}, {"db", db}});
  const Device device = check.same_device({{"da", da}, {"db", db}, {"dout", dout}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, dout.dtype);
    if (!da.empty()) cuda::accumulate(dout.dtype, da.ptr, dout.ptr, dout.numel());
    if (!db.empty()) cuda::accumulate(dout.dtype, db.ptr, dout.ptr, dout.numel());
    return;
  }
  detail::dispatch_float(check, device, dout.dtype, [&]<class T>(std::type_identity<T>) {
    if (!da.empty()) cpu::accumulate(da.data<T>(), dout.data<T>(), dout.numel());
    if (!db.empty()) cpu::accumulate(db.data<T>(), dout.data<T>(), dout.numel());
  });
}

}  // namespace speedrun::ops
