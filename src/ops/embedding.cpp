// The embedding op (ops.h). CPU: ops/cpu/embedding.h; CUDA: kernels/ops/embedding.cu;
// tests: tests/unit/ops/test_embedding.cpp.
#include "ops/cpu/embedding.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::ops {

using detail::Arg;
using detail::Checker;

void embedding_forward(Tensor out, const Tensor& tokens, const Tensor& table) {
  const Checker check("embedding_forward");
  check.floating({"table", table});
  check.ndim({"table", table}, 2);
  check.dtype({"tokens", tokens}, DType::i32);
  const int64_t rows = tokens.numel(), vocab = table.size(0), channels = table.size(1);
  check.matrix({"out", out}, rows, channels);
  const Device device = check.same_device({{"out", out}, {"tokens", tokens}, {"table", table}});
  check.indices_below({"tokens", tokens}, vocab, "the rows of table");
  if (device == Device::cuda) {
    // On CUDA the table (f32 master weights, or bf16) and out (f32 or bf16) may differ.
    check.floating({"out", out});
    detail::cuda_prelude(check, out.dtype);
    detail::cuda_prelude(check, table.dtype);
    cuda::embedding_forward(out.dtype, out.ptr, tokens.data<int32_t>(), table.dtype, table.ptr, rows, channels, vocab);
    return;
  }
  check.same_dtype({"out", out}, {"table", table});
  detail::dispatch_float(check, device, table.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::embedding_forward(out.data<T>(), tokens.data<int32_t>(), table.data<T>(), rows, channels);
  });
}

void embedding_backward(Tensor dtable, const Tensor& tokens, const Tensor& dout) {
  const Checker check("embedding_backward");
  check.floating({"dtable", dtable});
  check.ndim({"dtable", dtable}, 2);
  check.dtype({"tokens", tokens}, DType::i32);
  const int64_t rows = tokens.numel(), vocab = dtable.size(0), channels = dtable.size(1);
  check.matrix({"dout", dout}, rows, channels);
  const Device device = check.same_device({{"dtable", dtable}, {"tokens", tokens}, {"dout", dout}});
  check.indices_below({"tokens", tokens}, vocab, "the rows of dtable");
  if (device == Device::cuda) {
    // On CUDA dtable is f32 and dout f32 or bf16.
    check.floating({"dout", dout});
    check.dtype({"dtable", dtable}, DType::f32);
    detail::cuda_prelude(check, dout.dtype);
    cuda::embedding_backward(dtable.data<float>(), tokens.data<int32_t>(), dout.dtype, dout.ptr, rows, channels,
                             vocab);
    return;
  }
  check.same_dtype({"dout", dout}, {"dtable", dtable});
  detail::dispatch_float(check, device, dtable.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::embedding_backward(dtable.data<T>(), tokens.data<int32_t>(), dout.data<T>(), rows, channels);
  });
}

}  // namespace speedrun::ops
