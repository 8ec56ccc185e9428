// ops::convert on the CPU (a copy: the CPU computes in one dtype) and its argument checks.
// The f32 <-> bf16 conversions are CUDA-only: CudaOpsTest.ConvertRoundsLikeTheHost.
#include "cuda_op_case.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

TEST(OpsConvert, CpuCopiesEqualDtypes) {
  std::vector<float> src = {1.5f, -2.25f, 3.0e-8f, 7.0f}, dst(4, 0.0f);
  ops::convert(view(dst, {2, 2}), view(src, {4}));  // shapes may differ, counts may not
  EXPECT_EQ(dst, src);
  std::vector<double> a = {1.0, 2.0}, b(2);
  ops::convert(view(b, {2}), view(a, {2}));
  EXPECT_EQ(a, b);
}

TEST(OpsConvert, RejectsBadArguments) {
  std::vector<float> src(4), short_dst(3);
  std::vector<double> wide(4);
  EXPECT_INVALID_ARGUMENT(ops::convert(view(short_dst, {3}), view(src, {4})), "convert", "dst", "4 elements");
  EXPECT_INVALID_ARGUMENT(ops::convert(view(wide, {4}), view(src, {4})), "convert", "dst");
  EXPECT_CUDA_NOT_IMPLEMENTED(ops::convert(on_cuda(view(short_dst, {3})), on_cuda(view(src, {3}))), "convert");
}

}  // namespace
}  // namespace speedrun::test

// ---- CUDA (cuda_op_case.h) ----------------------------------------------------------------------
namespace speedrun::test {
namespace {

// f32 <-> bf16 conversion: round to nearest even, exactly as the host's rounding (the CPU
// op converts nothing, so the host's rounding is the reference).
CUDA_OP_CASE(ConvertRoundsLikeTheHost) {
  for_each_case<1>({DType::f32}, {{10007}}, [&](DType, std::array<int64_t, 1> shape) {
    const int64_t n = shape[0];
    input("src", DType::f32, {n}, -3.0, 3.0);
    output("half", DType::bf16, {n});
    output("back", DType::f32, {n});
    run_cuda([&](const Side& s) {
      ops::convert(s["half"], s["src"]);
      ops::convert(s["back"], s["half"]);
    });
    const std::vector<float> want = round_to(DType::bf16, cpu("src"));
    expect_bitwise_equal("convert f32 -> bf16", device("half"), want);
    expect_bitwise_equal("convert bf16 -> f32", device("back"), want);
  });
}

}  // namespace
}  // namespace speedrun::test
