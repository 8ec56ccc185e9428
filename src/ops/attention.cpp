// The attention op (ops.h): causal attention, optionally document- and window-masked. CPU: ops/cpu/attention.h; CUDA:
// kernels/ops/attention.cu, attention_tc.cu and attention_flash.cu (the mask: attention_mask.h); tests:
// tests/unit/ops/test_attention.cpp, test_attention_mask.cpp (CUDA cases CudaOpsTest.AttentionMask*) and
// tests/python/test_attention_mask_blocks.py.
#include <climits>
#include <cmath>
#include <string>
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

// The mask's documents are (B, T) i32 ids on q's device, nondecreasing along each sequence
// (checked on the CPU; on CUDA a precondition the kernels rely on: reading them back would
// stall the stream); its window has a positive block size.
void check_mask(const Checker& check, const Tensor& q, const AttentionMask& mask) {
  if (mask.window_blocks > 0 && mask.block_size <= 0)
    check.fail("mask.window_blocks = " + std::to_string(mask.window_blocks) + " needs mask.block_size > 0, got " +
               std::to_string(mask.block_size));
  if (mask.block_size > INT_MAX || mask.window_blocks > INT_MAX)
    check.fail("mask.block_size " + std::to_string(mask.block_size) + " or mask.window_blocks " +
               std::to_string(mask.window_blocks) + " exceeds 2^31 - 1");
  if (mask.doc_ids.empty()) return;
  check.dtype({"mask.doc_ids", mask.doc_ids}, DType::i32);
  check.shape({"mask.doc_ids", mask.doc_ids}, {q.dims[0], q.dims[1]});
  if (mask.doc_ids.device != q.device)
    check.fail(std::string("mask.doc_ids must be on q's device (") + device_name(q.device) + ")");
  if (q.device != Device::cpu) return;
  const int32_t* d = mask.doc_ids.data<int32_t>();
  for (int64_t b = 0; b < q.dims[0]; ++b)
    for (int64_t t = 1; t < q.dims[1]; ++t)
      if (d[b * q.dims[1] + t] < d[b * q.dims[1] + t - 1])
        check.fail("mask.doc_ids decrease at sequence " + std::to_string(b) + ", position " + std::to_string(t) +
                   " (document numbers must be nondecreasing)");
}

// The CUDA kernels' form of a mask (kernels/ops/attention_mask.h); check_mask has run.
cuda::DocWindowMask cuda_mask(const Tensor& q, const AttentionMask& mask) {
  cuda::DocWindowMask m;
  m.doc = mask.doc_ids.empty() ? nullptr : mask.doc_ids.data<int32_t>();
  m.seq = q.dims[1];
  m.block_size = mask.block_size > 0 ? static_cast<int>(mask.block_size) : 1;
  m.window_blocks = mask.window_blocks > 0 ? static_cast<int>(mask.window_blocks) : 0;
  return m;
}

// The first visible key of every query (cpu::attention_key_starts), or none for plain causal.
std::vector<int64_t> key_starts(const Tensor& q, const AttentionMask& mask) {
  std::vector<int64_t> start;
  if (mask.causal_only()) return start;
  cpu::attention_key_starts(start, mask.doc_ids.empty() ? nullptr : mask.doc_ids.data<int32_t>(), q.dims[0],
                            q.dims[1], mask.block_size, mask.window_blocks);
  return start;
}

void check_cuda_head_dim(const Checker& check, const Tensor& q) {
  if (!cuda::attention_supports_head_dim(q.dims[3])) {
    check.fail("q has shape " + q.shape_string() + ": the CUDA attention supports head_dim " +
               cuda::attention_head_dims_text());
  }
}

}  // namespace

void attention_forward(Tensor out, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       const AttentionMask& mask) {
  const Checker check("attention_forward");
  check_attention(check, q, {{"k", k}, {"v", v}, {"out", out}}, {"lse", lse}, scale);
  const Device device = check.same_device({{"out", out}, {"lse", lse}, {"q", q}, {"k", k}, {"v", v}});
  if (device == Device::cuda) {
    check_mask(check, q, mask);
    detail::cuda_prelude(check, q.dtype);
    check_cuda_head_dim(check, q);
    const cuda::DocWindowMask m = cuda_mask(q, mask);
    cuda::attention_forward(q.dtype, out.ptr, lse.data<float>(), q.ptr, k.ptr, v.ptr, q.dims[0], q.dims[1], q.dims[2],
                            q.dims[3], static_cast<float>(scale), mask.causal_only() ? nullptr : &m);
    return;
  }
  check_mask(check, q, mask);
  const std::vector<int64_t> start = key_starts(q, mask);
  detail::dispatch_float(check, device, q.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::attention_forward(out.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), q.dims[0],
                           q.dims[1], q.dims[2], q.dims[3], static_cast<T>(scale), start.empty() ? nullptr : start.data());
  });
}

void attention_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, double scale,
                        const AttentionMask& mask) {
  const Checker check("attention_backward");
  check_attention(check, q,
                  {{"dq", dq}, {"dk", dk}, {"dv", dv}, {"dout", dout}, {"k", k}, {"v", v}, {"out", out}},
                  {"lse", lse}, scale);
  const Device device = check.same_device({{"dq", dq}, {"dk", dk}, {"dv", dv}, {"dout", dout}, {"q", q},
                                           {"k", k}, {"v", v}, {"out", out}, {"lse", lse}});
  if (device == Device::cuda) {
    check_mask(check, q, mask);
    detail::cuda_prelude(check, q.dtype);
    check_cuda_head_dim(check, q);
    const cuda::DocWindowMask m = cuda_mask(q, mask);
    cuda::attention_backward(q.dtype, dq.ptr, dk.ptr, dv.ptr, dout.ptr, q.ptr, k.ptr, v.ptr, out.ptr,
                             lse.data<float>(), q.dims[0], q.dims[1], q.dims[2], q.dims[3], static_cast<float>(scale),
                             mask.causal_only() ? nullptr : &m);
    return;
  }
  check_mask(check, q, mask);
  const std::vector<int64_t> start = key_starts(q, mask);
  detail::dispatch_float(check, device, q.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::attention_backward(dq.data<T>(), dk.data<T>(), dv.data<T>(), dout.data<T>(), q.data<T>(), k.data<T>(),
                            v.data<T>(), out.data<T>(), lse.data<T>(), q.dims[0], q.dims[1], q.dims[2], q.dims[3],
                            static_cast<T>(scale), start.empty() ? nullptr : start.data());
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
