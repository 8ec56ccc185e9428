// ops::convert on the CPU (a copy: the CPU computes in one dtype) and its argument checks.
// The f32 <-> bf16 conversions are CUDA-only: CudaOpsTest.ConvertRoundsLikeTheHost.
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
