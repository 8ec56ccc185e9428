// The attention op (ops.h): causal attention. CPU: ops/cpu/attention.h; CUDA:
// kernels/ops/attention.cu and attention_tc.cu; tests: tests/unit/ops/test_attention.cpp.
#include <cmath>
#include <vector>

#include "ops/cpu/attention.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::ops {

using detail::Arg;
using detail::Checker;

namespace {

// q (B, T, H, D) sets the shape; every other tensor matches it, lse is (B, H, T).
void check_attention(const Checker& check, const Tensor& q, std::initializer_list<Arg> like_q, Arg lse,
                     double scale) {
  check.floating({"q", q});
  check.ndim({"q", q}, 4);
  for (const Arg& a : like_q) {
    check.same_shape(a, {"q", q});
    check.same_dtype(a, {"q", q});
  }
  check.shape(lse, {q.dims[0], q.dims[2], q.dims[1]});
  check.param_dtype(lse, {"q", q});
  if (!std::isfinite(scale)) check.fail("scale = " + std::to_string(scale) + " is not finite");
}

void check_cuda_head_dim(const Checker& check, const Tensor& q) {
  if (!cuda::attention_supports_head_dim(q.dims[3])) {
    check.fail("q has shape " + q.shape_string() + ": the CUDA attention supports head_dim " +
               cuda::attention_head_dims_text());
  }
}

}  // namespace

void attention_forward(Tensor out, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const Checker check("attention_forward");
  check_attention(check, q, {{"k", k}, {"v", v}, {"out", out}}, {"lse", lse}, scale);
  const Device device = check.same_device({{"out", out}, {"lse", lse}, {"q", q}, {"k", k}, {"v", v}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, q.dtype);
    check_cuda_head_dim(check, q);
    cuda::attention_forward(q.dtype, out.ptr, lse.data<float>(), q.ptr, k.ptr, v.ptr, q.dims[0], q.dims[1], q.dims[2],
                            q.dims[3], static_cast<float>(scale));
    return;
  }
  detail::dispatch_float(check, device, q.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::attention_forward(out.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), q.dims[0],
                           q.dims[1], q.dims[2], q.dims[3], static_cast<T>(scale));
  });
}

void attention_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, double scale) {
  const Checker check("attention_backward");
  check_attention(check, q,
                  {{"dq", dq}, {"dk", dk}, {"dv", dv}, {"dout", dout}, {"k", k}, {"v", v}, {"out", out}},
                  {"lse", lse}, scale);
  const Device device = check.same_device({{"dq", dq}, {"dk", dk}, {"dv", dv}, {"dout", dout}, {"q", q},
                                           {"k", k}, {"v", v}, {"out", out}, {"lse", lse}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, q.dtype);
    check_cuda_head_dim(check, q);
    cuda::attention_backward(q.dtype, dq.ptr, dk.ptr, dv.ptr, dout.ptr, q.ptr, k.ptr, v.ptr, out.ptr,
                             lse.data<float>(), q.dims[0], q.dims[1], q.dims[2], q.dims[3], static_cast<float>(scale));
    return;
  }
  detail::dispatch_float(check, device, q.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::attention_backward(dq.data<T>(), dk.data<T>(), dv.data<T>(), dout.data<T>(), q.data<T>(), k.data<T>(),
                            v.data<T>(), out.data<T>(), lse.data<T>(), q.dims[0], q.dims[1], q.dims[2], q.dims[3],
                            static_cast<T>(scale));
  });
}

void attention_decode(Tensor out, const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const Checker check("attention_decode");
  check.floating({"q", q});
  check.ndim({"q", q}, 4);
  check.same_shape({"out", out}, {"q", q});
  check.same_dtype({"out", out}, {"q", q});
  check.ndim({"k", k}, 4);
  const int64_t S = k.dims[1];
  if (k.dims[0] != q.dims[0] || k.dims[2] != q.dims[2] || k.dims[3] != q.dims[3] || S < q.dims[1])
    check.fail("k has shape " + k.shape_string() + ", expected (" + std::to_string(q.dims[0]) + ", S >= " +
               std::to_string(q.dims[1]) + ", " + std::to_string(q.dims[2]) + ", " + std::to_string(q.dims[3]) +
               ") for q " + q.shape_string());
  check.same_dtype({"k", k}, {"q", q});
  check.same_shape({"v", v}, {"k", k});
  check.same_dtype({"v", v}, {"q", q});
  if (!std::isfinite(scale)) check.fail("scale = " + std::to_string(scale) + " is not finite");
  const Device device = check.same_device({{"out", out}, {"q", q}, {"k", k}, {"v", v}});
  detail::dispatch_float(check, device, q.dtype, [&]<class T>(std::type_identity<T>) {
    std::vector<T> lse(static_cast<size_t>(q.dims[0] * q.dims[2] * q.dims[1]));
    cpu::attention_forward_at(out.data<T>(), lse.data(), q.data<T>(), k.data<T>(), v.data<T>(), q.dims[0], q.dims[1],
                              S, q.dims[2], q.dims[3], static_cast<T>(scale));
  });
}

}  // namespace speedrun::ops
