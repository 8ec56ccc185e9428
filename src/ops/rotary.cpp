// The rotary op (ops.h): rotary position embedding. CPU: ops/cpu/rotary.h; CUDA:
// kernels/ops/rotary.cu; tests: tests/unit/ops/test_rotary.cpp.
#include <cmath>
#include <vector>

#include "core/device_memory.h"

#include "ops/cpu/rotary.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::ops {

using detail::Arg;
using detail::Checker;

namespace {

// x is (B, T, H, D) with D even; cos and sin are f32 (T', D/2) tables with T' >= T (a table
// built for the longest sequence serves shorter ones).
void check_rotary(const Checker& check, Arg x, Arg y, const Tensor& cos, const Tensor& sin) {
  check.floating(x);
  check.ndim(x, 4);
  check.same_shape(y, x);
  check.same_dtype(y, x);
  const int64_t seq = x.tensor.dims[1], head_dim = x.tensor.dims[3];
  if (head_dim % 2 != 0) check.fail(std::string(x.name) + " has shape " + x.tensor.shape_string() + ": odd head_dim");
  for (const Arg table : {Arg{"cos", cos}, Arg{"sin", sin}}) {
    check.dtype(table, DType::f32);
    check.ndim(table, 2);
    if (table.tensor.dims[1] != head_dim / 2 || table.tensor.dims[0] < seq) {
      check.fail(std::string(table.name) + " has shape " + table.tensor.shape_string() + ", expected (>= " +
                 std::to_string(seq) + ", " + std::to_string(head_dim / 2) + ") for " + x.name + " " +
                 x.tensor.shape_string());
    }
  }
}

}  // namespace

void rotary_forward(Tensor out, const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const Checker check("rotary_forward");
  check_rotary(check, {"x", x}, {"out", out}, cos, sin);
  const Device device = check.same_device({{"out", out}, {"x", x}, {"cos", cos}, {"sin", sin}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, x.dtype);
    cuda::rotary_forward(x.dtype, out.ptr, x.ptr, cos.data<float>(), sin.data<float>(), x.dims[0], x.dims[1],
                         x.dims[2], x.dims[3]);
    return;
  }
  detail::dispatch_float(check, device, x.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::rotary_forward(out.data<T>(), x.data<T>(), cos.data<float>(), sin.data<float>(), x.dims[0], x.dims[1],
                        x.dims[2], x.dims[3]);
  });
}

void rotary_backward(Tensor dx, const Tensor& dout, const Tensor& cos, const Tensor& sin) {
  const Checker check("rotary_backward");
  check_rotary(check, {"dout", dout}, {"dx", dx}, cos, sin);
  const Device device = check.same_device({{"dx", dx}, {"dout", dout}, {"cos", cos}, {"sin", sin}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, dout.dtype);
    cuda::rotary_backward(dout.dtype, dx.ptr, dout.ptr, cos.data<float>(), sin.data<float>(), dout.dims[0],
                          dout.dims[1], dout.dims[2], dout.dims[3]);
    return;
  }
  detail::dispatch_float(check, device, dout.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::rotary_backward(dx.data<T>(), dout.data<T>(), cos.data<float>(), sin.data<float>(), dout.dims[0],
                         dout.dims[1], dout.dims[2], dout.dims[3]);
  });
}

void rotary_tables(Tensor cos, Tensor sin, int64_t head_dim, double base) {
  const Checker check("rotary_tables");
  if (head_dim < 4 || head_dim % 4 != 0) check.fail("head_dim = " + std::to_string(head_dim) + " is not a multiple of 4");
  if (!(base > 0.0) || !std::isfinite(base)) check.fail("base = " + std::to_string(base) + " must be finite and > 0");
  check.dtype({"cos", cos}, DType::f32);
  check.ndim({"cos", cos}, 2);
  check.shape({"cos", cos}, {cos.dims[0], head_dim / 2});
  check.same_shape({"sin", sin}, {"cos", cos});
  check.dtype({"sin", sin}, DType::f32);
  const Device device = check.same_device({{"cos", cos}, {"sin", sin}});
  if (device == Device::cuda) {
    // Built on the host by the CPU code (bitwise the CPU's tables) and copied over.
    detail::cuda_prelude(check, DType::f32);
    std::vector<float> c(static_cast<size_t>(cos.numel())), s(c.size());
    cpu::rotary_tables(c.data(), s.data(), cos.dims[0], head_dim, base);
    if (!c.empty()) {
      device_copy(cos.ptr, c.data(), c.size() * sizeof(float));
      device_copy(sin.ptr, s.data(), s.size() * sizeof(float));
    }
    return;
  }
  // The tables are f32 whatever the activations' dtype: dispatch only for the device.
  detail::dispatch_float(check, device, DType::f32, [&]<class T>(std::type_identity<T>) {
    cpu::rotary_tables(cos.data<float>(), sin.data<float>(), cos.dims[0], head_dim, base);
  });
}

}  // namespace speedrun::ops
