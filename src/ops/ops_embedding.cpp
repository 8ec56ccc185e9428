// ops.h: embedding.
#include "ops/cpu/embedding.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

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
  check.same_dtype({"out", out}, {"table", table});
  const Device device = check.same_device({{"out", out}, {"tokens", tokens}, {"table", table}});
  check.indices_below({"tokens", tokens}, vocab, "the rows of table");
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
  check.same_dtype({"dout", dout}, {"dtable", dtable});
  const Device device = check.same_device({{"dtable", dtable}, {"tokens", tokens}, {"dout", dout}});
  check.indices_below({"tokens", tokens}, vocab, "the rows of dtable");
  detail::dispatch_float(check, device, dtable.dtype, [&]<class T>(std::type_identity<T>) {
    cpu::embedding_backward(dtable.data<T>(), tokens.data<int32_t>(), dout.data<T>(), rows, channels);
  });
}

}  // namespace speedrun::ops
