// QK-norm and rotary as one call each way (ops.h: qk_norm_rotary_forward/backward): the
// sequence of the two ops (rmsnorm.cpp's QK-norm, rotary.cpp) on the CPU and on CUDA by
// default; with cuda::qk_norm_rotary_fuses, one kernel each way (kernels/ops/qk_norm_rotary.cu).
// Tests: tests/unit/ops/test_rotary.cpp (OpsQkNormRotary.*, CudaOpsTest.QkNormRotary*).
#include <cmath>
#include <string>

#include "ops/dispatch.h"
#include "ops/ops.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::ops {

using detail::Arg;
using detail::Checker;

namespace {

// x (B, T, H, D), y like x, rstd (B T H), cos and sin f32 (>= T, D / 2). Returns D. The
// component ops check the same again on the unfused path; the fused path relies on these.
int64_t check_args(const Checker& check, Arg x, Arg y, const Tensor& rstd, const Tensor& cos, const Tensor& sin) {
  check.floating(x);
  check.ndim(x, 4);
  check.same_shape(y, x);
  check.same_dtype(y, x);
  const int64_t seq = x.tensor.dims[1], head_dim = x.tensor.dims[3];
  if (head_dim % 2 != 0) check.fail(std::string(x.name) + " has shape " + x.tensor.shape_string() + ": odd head_dim");
  check.numel({"rstd", rstd}, x.tensor.numel() / (head_dim > 0 ? head_dim : 1), "one per head of each row");
  check.param_dtype({"rstd", rstd}, x);
  for (const Arg table : {Arg{"cos", cos}, Arg{"sin", sin}}) {
    check.dtype(table, DType::f32);
    check.ndim(table, 2);
    if (table.tensor.dims[1] != head_dim / 2 || table.tensor.dims[0] < seq) {
      check.fail(std::string(table.name) + " has shape " + table.tensor.shape_string() + ", expected (>= " +
                 std::to_string(seq) + ", " + std::to_string(head_dim / 2) + ") for " + x.name + " " +
                 x.tensor.shape_string());
    }
  }
  return head_dim;
}

// (B, T, H, D) as (B T, H D): the QK-norm ops' view.
Tensor flat(const Tensor& t) { return t.reshaped({t.dims[0] * t.dims[1], t.dims[2] * t.dims[3]}); }

}  // namespace

void qk_norm_rotary_forward(Tensor out, Tensor rstd, const Tensor& x, const Tensor& cos, const Tensor& sin,
                            double eps) {
  const Checker check("qk_norm_rotary_forward");
  const int64_t head_dim = check_args(check, {"x", x}, {"out", out}, rstd, cos, sin);
  const Device device =
      check.same_device({{"out", out}, {"rstd", rstd}, {"x", x}, {"cos", cos}, {"sin", sin}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    if (!(eps >= 0.0) || !std::isfinite(eps)) check.fail("eps = " + std::to_string(eps) + " must be finite and >= 0");
    if (cuda::qk_norm_rotary_fuses(head_dim)) {
      cuda::qk_norm_rotary_forward(x.dtype, out.ptr, rstd.data<float>(), x.ptr, cos.data<float>(), sin.data<float>(),
                                   x.dims[0], x.dims[1], x.dims[2], head_dim, static_cast<float>(eps));
      return;
    }
  }
  qk_norm_forward(flat(out), rstd, flat(x), head_dim, eps);
  rotary_forward(out, out, cos, sin);
}

void qk_norm_rotary_backward(Tensor dx, const Tensor& dout, const Tensor& x, const Tensor& rstd, const Tensor& cos,
                             const Tensor& sin) {
  const Checker check("qk_norm_rotary_backward");
  const int64_t head_dim = check_args(check, {"x", x}, {"dout", dout}, rstd, cos, sin);
  check.same_shape({"dx", dx}, {"x", x});
  check.same_dtype({"dx", dx}, {"x", x});
  const Device device =
      check.same_device({{"dx", dx}, {"dout", dout}, {"x", x}, {"rstd", rstd}, {"cos", cos}, {"sin", sin}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    if (cuda::qk_norm_rotary_fuses(head_dim)) {
      cuda::qk_norm_rotary_backward(x.dtype, dx.ptr, dout.ptr, x.ptr, rstd.data<float>(), cos.data<float>(),
                                    sin.data<float>(), x.dims[0], x.dims[1], x.dims[2], head_dim);
      return;
    }
  }
  rotary_backward(dx, dout, cos, sin);
  qk_norm_backward(flat(dx), flat(dx), flat(x), rstd, head_dim);
}

}  // namespace speedrun::ops
