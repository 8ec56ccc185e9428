// The cross_entropy op (ops.h): the fused soft-capped cross-entropy, and the logit soft cap
// on its own (softcap_forward), which is part of this op. CPU: ops/cpu/cross_entropy.h and
// ops/cpu/softcap.h; CUDA: kernels/ops/cross_entropy.cu and softcap.cuh; tests:
// tests/unit/ops/test_cross_entropy.cpp.
#include <cmath>
#include <vector>

#include "core/device_memory.h"

#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/softcap.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::ops {

using detail::Arg;
using detail::Checker;

namespace {

void check_softcap(const Checker& check, const SoftCap& cap) {
  if (cap.kind == SoftCap::Kind::none) return;
  if (!(cap.cap > 0.0) || !std::isfinite(cap.cap)) check.fail("cap = " + std::to_string(cap.cap) + " must be > 0");
  if (cap.kind == SoftCap::Kind::sigmoid && (!(cap.denominator > 0.0) || !std::isfinite(cap.denominator))) {
    check.fail("denominator = " + std::to_string(cap.denominator) + " must be > 0");
  }
}

}  // namespace

void softcap_forward(Tensor out, const Tensor& z, const SoftCap& cap) {
  const Checker check("softcap_forward");
  check.floating({"z", z});
  check.ndim_at_least({"z", z}, 1);
  check.same_matrix({"out", out}, {"z", z});
  check.same_dtype({"out", out}, {"z", z});
  check_softcap(check, cap);
  const Device device = check.same_device({{"out", out}, {"z", z}});
  if (device == Device::cuda) {
    detail::cuda_prelude(check, z.dtype);
    cuda::softcap_forward(z.dtype, out.ptr, z.ptr, z.numel(), cap);
    return;
  }
  detail::dispatch_float(check, device, z.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::with_softcap<T>(cap, [&](const auto& c) { cpu::softcap_forward(out.data<T>(), z.data<T>(), z.numel(), c); });
  });
}

void softcap_cross_entropy(Tensor losses, Tensor dz, const Tensor& z, const Tensor& targets, const SoftCap& cap,
                           double grad_scale) {
  const Checker check("softcap_cross_entropy");
  check.floating({"z", z});
  check.ndim_at_least({"z", z}, 1);
  const int64_t rows = z.rows(), vocab = z.size(-1);
  if (vocab == 0) check.fail("z has shape " + z.shape_string() + ": no classes");
  check.numel({"losses", losses}, rows, "one per row of z");
  check.param_dtype({"losses", losses}, {"z", z});
  check.dtype({"targets", targets}, DType::i32);
  check.numel({"targets", targets}, rows, "one per row of z");
  if (!dz.empty()) {
    check.same_matrix({"dz", dz}, {"z", z});
    check.same_dtype({"dz", dz}, {"z", z});
  }
  check_softcap(check, cap);
  if (!std::isfinite(grad_scale)) check.fail("grad_scale = " + std::to_string(grad_scale) + " is not finite");
  const Device device = check.same_device({{"losses", losses}, {"dz", dz}, {"z", z}, {"targets", targets}});
  check.indices_below({"targets", targets}, vocab, "the columns of z");
  if (device == Device::cuda) {
    detail::cuda_prelude(check, z.dtype);
    cuda::softcap_cross_entropy(losses.data<float>(), z.dtype, dz.empty() ? nullptr : dz.ptr, z.ptr,
                                targets.data<int32_t>(), rows, vocab, cap, static_cast<float>(grad_scale));
    return;
  }
  detail::dispatch_float(check, device, z.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::with_softcap<T>(cap, [&](const auto& c) {
      cpu::softcap_cross_entropy(losses.data<T>(), detail::data_or_null<T>(dz), z.data<T>(),
                                 targets.data<int32_t>(), rows, vocab, c, static_cast<T>(grad_scale));
    });
  });
}

double sum_losses(const Tensor& losses) {
  const Checker check("sum_losses");
  check.floating({"losses", losses});
  double total = 0.0;
  if (losses.device == Device::cuda) {
    // Copied to the host (this synchronizes: call it once per step, after the backward) and
    // summed there in row order, in double, as on the CPU.
    detail::cuda_prelude(check, losses.dtype);
    check.dtype({"losses", losses}, DType::f32);
    std::vector<float> host(static_cast<size_t>(losses.numel()));
    if (!host.empty()) device_copy(host.data(), losses.ptr, host.size() * sizeof(float));
    for (float x : host) total += static_cast<double>(x);
    return total;
  }
  detail::dispatch_float(check, losses.device, losses.dtype, [&]<class T>(std::type_identity<T>) {
    // In order, in double: the same sum on every machine and thread count.
    const T* p = losses.data<T>();
    const int64_t n = losses.numel();
    for (int64_t i = 0; i < n; ++i) total += static_cast<double>(p[i]);
  });
  return total;
}

void add_sum_of_losses(Tensor total, const Tensor& losses, bool overwrite) {
  const Checker check("add_sum_of_losses");
  check.dtype({"total", total}, DType::f64);
  check.shape({"total", total}, {1});
  check.same_device({{"total", total}, {"losses", losses}});
  if (losses.device == Device::cuda) {
    detail::cuda_prelude(check, losses.dtype);
    check.dtype({"losses", losses}, DType::f32);
    cuda::add_sum_of_losses(total.data<double>(), losses.data<float>(), losses.numel(), overwrite);
    return;
  }
  const double sum = sum_losses(losses);
  double* t = total.data<double>();
  *t = overwrite ? sum : *t + sum;
}

double read_scalar_f64(const Tensor& total) {
  const Checker check("read_scalar_f64");
  check.dtype({"total", total}, DType::f64);
  check.shape({"total", total}, {1});
  if (total.device == Device::cuda) return cuda::read_f64(total.data<double>());
  return *total.data<double>();
}

}  // namespace speedrun::ops
