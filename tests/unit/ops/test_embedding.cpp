// ops::embedding_forward / embedding_backward.
#include "cuda_op_case.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

class OpsEmbedding : public OpsTest {};

TEST_F(OpsEmbedding, ForwardCopiesTableRows) {
  for (auto [rows, vocab, channels] : Shapes<3>{{1, 1, 1}, {7, 5, 13}, {64, 300, 96}}) {
    std::vector<double> table = uniform(vocab * channels);
    std::vector<int32_t> tokens = indices(rows, static_cast<int32_t>(vocab));
    std::vector<double> out(rows * channels, -7.0);
    ops::embedding_forward(view(out, {rows, channels}), view(tokens, {rows}), view(table, {vocab, channels}));
    std::vector<double> want(rows * channels);
    for (int64_t n = 0; n < rows; ++n)
      for (int64_t c = 0; c < channels; ++c) want[n * channels + c] = table[tokens[n] * channels + c];
    expect_bitwise_equal("f64", out, want);

    std::vector<float> table32 = cast<float>(table), out32(rows * channels);
    ops::embedding_forward(view(out32, {rows, channels}), view(tokens, {rows}), view(table32, {vocab, channels}));
    expect_bitwise_equal("f32", out32, cast<float>(want));
  }
}

// out is linear in the table, so the finite differences are exact up to rounding.
TEST_F(OpsEmbedding, BackwardMatchesFiniteDifferences) {
  for (auto [rows, vocab, channels] : Shapes<3>{{1, 3, 2}, {9, 4, 5}, {20, 7, 13}}) {
    std::vector<double> table = uniform(vocab * channels);
    std::vector<int32_t> tokens = indices(rows, static_cast<int32_t>(vocab));  // with repeats: rows > vocab
    std::vector<double> r = uniform(rows * channels);
    std::vector<double> out(rows * channels);
    auto objective = [&] {
      ops::embedding_forward(view(out, {rows, channels}), view(tokens, {rows}), view(table, {vocab, channels}));
      return weighted_sum(r, out);
    };
    std::vector<double> dtable(vocab * channels, 0.0);
    ops::embedding_backward(view(dtable, {vocab, channels}), view(tokens, {rows}), view(r, {rows, channels}));
    // Rows of tokens that never occur have zero gradient; the scale comes from the others.
    expect_gradient("dtable", table, dtable, objective);
  }
}

TEST_F(OpsEmbedding, BackwardAccumulates) {
  const int64_t rows = 33, vocab = 6, channels = 10;
  std::vector<int32_t> tokens = indices(rows, static_cast<int32_t>(vocab));
  std::vector<double> dout = uniform(rows * channels);
  std::vector<double> once(vocab * channels, 0.0);
  ops::embedding_backward(view(once, {vocab, channels}), view(tokens, {rows}), view(dout, {rows, channels}));
  std::vector<double> twice(vocab * channels, 0.0);
  for (int i = 0; i < 2; ++i)
    ops::embedding_backward(view(twice, {vocab, channels}), view(tokens, {rows}), view(dout, {rows, channels}));
  std::vector<double> doubled = once;
  for (double& x : doubled) x *= 2;
  // Not bitwise: the second call adds the rows one by one onto the first call's sums.
  expect_near_rel("two calls add up", twice, doubled, 1e-14);

  // Adds onto what is there.
  std::vector<double> start = uniform(vocab * channels), acc = start;
  ops::embedding_backward(view(acc, {vocab, channels}), view(tokens, {rows}), view(dout, {rows, channels}));
  std::vector<double> want(vocab * channels);
  for (size_t i = 0; i < want.size(); ++i) want[i] = start[i] + once[i];
  expect_near_rel("adds onto dtable", acc, want, 1e-14);
}

TEST_F(OpsEmbedding, BackwardIsThreadCountDeterministic) {
  // Few distinct tokens, many rows: every table row receives many additions.
  const int64_t rows = 4096, vocab = 50, channels = 200;
  std::vector<int32_t> tokens = indices(rows, static_cast<int32_t>(vocab));
  std::vector<float> dout = cast<float>(uniform(rows * channels));
  std::vector<float> start = cast<float>(uniform(vocab * channels));
  std::vector<float> one = start, three = start;
  with_threads(1, [&] {
    ops::embedding_backward(view(one, {vocab, channels}), view(tokens, {rows}), view(dout, {rows, channels}));
  });
  with_threads(3, [&] {
    ops::embedding_backward(view(three, {vocab, channels}), view(tokens, {rows}), view(dout, {rows, channels}));
  });
  expect_bitwise_equal("1 vs 3 threads", one, three);
}

TEST_F(OpsEmbedding, RejectsBadArguments) {
  std::vector<float> table(5 * 4), out(3 * 4), out64d(3 * 4);
  std::vector<double> table64(5 * 4);
  std::vector<int32_t> tokens = {0, 4, 2};
  std::vector<int32_t> bad_tokens = {0, 5, 2};
  EXPECT_INVALID_ARGUMENT(
      ops::embedding_forward(view(out, {3, 4}), view(bad_tokens, {3}), view(table, {5, 4})), "embedding_forward",
      "tokens[1] = 5");
  EXPECT_INVALID_ARGUMENT(ops::embedding_forward(view(out, {3, 3}), view(tokens, {3}), view(table, {5, 4})),
                          "embedding_forward", "out", "(3, 3)");
  EXPECT_INVALID_ARGUMENT(ops::embedding_forward(view(out, {3, 4}), view(tokens, {3}), view(table64, {5, 4})),
                          "embedding_forward", "out", "f32");
  EXPECT_INVALID_ARGUMENT(ops::embedding_forward(view(out, {3, 4}), view(table, {5, 4}), view(table, {5, 4})),
                          "embedding_forward", "tokens", "f32");
  EXPECT_INVALID_ARGUMENT(ops::embedding_forward(view(out, {3, 4}), view(tokens, {3}), view(table, {20})),
                          "embedding_forward", "table");
  EXPECT_INVALID_ARGUMENT(ops::embedding_forward(view(out, {3, 4}), view(tokens, {3}), on_cuda(view(table, {5, 4}))),
                          "embedding_forward", "cuda");
  EXPECT_INVALID_ARGUMENT(
      ops::embedding_backward(view(table, {5, 4}), view(bad_tokens, {3}), view(out, {3, 4})), "embedding_backward",
      "tokens[1]");
  EXPECT_INVALID_ARGUMENT(ops::embedding_backward(view(table, {5, 4}), view(tokens, {2}), view(out, {3, 4})),
                          "embedding_backward", "dout");
  EXPECT_INVALID_ARGUMENT(ops::embedding_backward(Tensor(), view(tokens, {3}), view(out, {3, 4})),
                          "embedding_backward", "dtable", "missing");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::embedding_forward(on_cuda(view(out, {3, 4})), on_cuda(view(tokens, {3})),
                                                     on_cuda(view(table, {5, 4}))),
                              "embedding_forward");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::embedding_backward(on_cuda(view(table, {5, 4})), on_cuda(view(tokens, {3})),
                                                      on_cuda(view(out, {3, 4}))),
                              "embedding_backward");
}

}  // namespace
}  // namespace speedrun::test

// ---- CUDA against the CPU (cuda_op_case.h) -------------------------------------------------
namespace speedrun::test {
namespace {

CUDA_OP_CASE(EmbeddingMatchesCpuAndIsDeterministic) {
  for_each_case<3>(kActs, {{1, 3, 1}, {100, 7, 33}, {1000, 50, 768}, {4097, 50304, 64}},
                   [&](DType t, std::array<int64_t, 3> shape) {
    const auto [rows, vocab, ch] = shape;
    indices_arg("tokens", {rows}, static_cast<int32_t>(vocab));  // many repeats for small vocabs
    input("table", DType::f32, {vocab, ch});
    output("out", t, {rows, ch});
    run([&](const Side& s) { ops::embedding_forward(s["out"], s["tokens"], s["table"]); });
    // A copy (and one rounding): the CPU's f32 rows rounded to t.
    expect_near_rel("embedding_forward", device("out"), wide(round_to(t, cpu("out"))), 0.0);

    input("dout", t, {rows, ch});
    accumulator("grad", DType::f32, {vocab, ch});
    copy_of("grad2", "grad");
    run([&](const Side& s) { ops::embedding_backward(s["grad"], s["tokens"], s["dout"]); });
    run_cuda([&](const Side& s) { ops::embedding_backward(s["grad2"], s["tokens"], s["dout"]); });
    const std::vector<float> got = device("grad");
    expect_near_rel("embedding_backward", got, wide(cpu("grad")), kF32SumTol);
    expect_bitwise_equal("embedding_backward twice", got, device("grad2"));
  });
}

}  // namespace
}  // namespace speedrun::test
