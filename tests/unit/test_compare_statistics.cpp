// Statistics of `speedrun compare` against textbook values and scipy
// (scipy.stats.ttest_ind(equal_var=False), scipy.stats.t.sf, scipy.special.betainc).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "compare/statistics.h"

namespace cmp = speedrun::compare;

TEST(CompareStatistics, MeanAndSampleStd) {
  const cmp::Moments m = cmp::moments({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_EQ(m.n, 8);
  EXPECT_DOUBLE_EQ(m.mean, 5.0);
  EXPECT_NEAR(m.std, std::sqrt(32.0 / 7.0), 1e-12);  // n - 1 in the denominator
  const cmp::Moments one = cmp::moments({3.5});
  EXPECT_EQ(one.n, 1);
  EXPECT_DOUBLE_EQ(one.mean, 3.5);
  EXPECT_TRUE(std::isnan(one.std));
  EXPECT_TRUE(std::isnan(cmp::moments({}).mean));
}

TEST(CompareStatistics, RegularizedIncompleteBeta) {
  EXPECT_NEAR(cmp::regularized_incomplete_beta(2.5, 0.5, 0.3), 0.01892712407194565, 1e-12);
  EXPECT_NEAR(cmp::regularized_incomplete_beta(30, 40, 0.45), 0.6447480085585666, 1e-12);
  // I_x(1, 1) = x; I_x(a, 1) = x^a; symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
  EXPECT_NEAR(cmp::regularized_incomplete_beta(1, 1, 0.37), 0.37, 1e-14);
  EXPECT_NEAR(cmp::regularized_incomplete_beta(3, 1, 0.6), 0.216, 1e-14);
  EXPECT_NEAR(cmp::regularized_incomplete_beta(2, 5, 0.2) + cmp::regularized_incomplete_beta(5, 2, 0.8), 1.0, 1e-14);
  EXPECT_EQ(cmp::regularized_incomplete_beta(2, 3, 0.0), 0.0);
  EXPECT_EQ(cmp::regularized_incomplete_beta(2, 3, 1.0), 1.0);
  EXPECT_TRUE(std::isnan(cmp::regularized_incomplete_beta(-1, 3, 0.5)));
}

TEST(CompareStatistics, StudentTTextbookCriticalValues) {
  // Two-sided 5% critical values from the t table.
  EXPECT_NEAR(cmp::student_t_two_sided_p(2.228, 10), 0.05, 1e-4);
  EXPECT_NEAR(cmp::student_t_two_sided_p(12.706, 1), 0.05, 1e-4);
  EXPECT_NEAR(cmp::student_t_two_sided_p(2.776, 4), 0.05, 1e-4);
  EXPECT_NEAR(cmp::student_t_two_sided_p(1.96, 1e7), 0.05, 1e-4);  // the normal limit
  // scipy: 2 * t.sf(2.228, 10), 2 * t.sf(2.0, 3.5), 2 * t.sf(0.5, 100)
  EXPECT_NEAR(cmp::student_t_two_sided_p(2.228, 10), 0.05001177181711133, 1e-12);
  EXPECT_NEAR(cmp::student_t_two_sided_p(2.0, 3.5), 0.1261385225759135, 1e-12);
  EXPECT_NEAR(cmp::student_t_two_sided_p(-0.5, 100), 0.6181735658308867, 1e-12);
  // df = 1 is the Cauchy distribution: p = 1 - (2/pi) atan|t|.
  for (double t : {0.1, 1.0, 3.0, 40.0})
    EXPECT_NEAR(cmp::student_t_two_sided_p(t, 1), 1.0 - 2.0 / std::numbers::pi * std::atan(t), 1e-12) << t;
  EXPECT_DOUBLE_EQ(cmp::student_t_two_sided_p(0.0, 5), 1.0);
}

TEST(CompareStatistics, WelchHandComputed) {
  // a: mean 2.5, var 5/3; b: mean 4, var 4. Standard error^2 = 5/12 + 4/3 = 7/4,
  // t = -1.5 / sqrt(7/4), df = (7/4)^2 / ((5/12)^2/3 + (4/3)^2/2) = 3.2347188...
  cmp::WelchResult w;
  ASSERT_TRUE(cmp::welch_t_test({1, 2, 3, 4}, {2, 4, 6}, w));
  EXPECT_NEAR(w.t, -1.5 / std::sqrt(1.75), 1e-12);
  EXPECT_NEAR(w.df, 3.0625 / (25.0 / 144.0 / 3.0 + 16.0 / 9.0 / 2.0), 1e-12);
  EXPECT_NEAR(w.df, 3.234718826405868, 1e-12);
  EXPECT_NEAR(w.p, 0.3338237000775014, 1e-10);  // scipy ttest_ind(equal_var=False)
}

TEST(CompareStatistics, WelchUndefinedCases) {
  cmp::WelchResult w;
  EXPECT_FALSE(cmp::welch_t_test({1.0}, {2.0, 3.0}, w));       // one run
  EXPECT_FALSE(cmp::welch_t_test({1.0, 1.0}, {1.0, 1.0}, w));  // no spread at all
  ASSERT_TRUE(cmp::welch_t_test({1.0, 1.0}, {2.0, 3.0}, w));   // one spread is enough
  EXPECT_GT(w.p, 0.0);
  EXPECT_LT(w.p, 1.0);
}

TEST(CompareStatistics, Track3Significance) {
  // Upstream's tuned Muon baseline: mean 3.2787 over 10 runs, 0.0013 * sqrt(10) = 0.00411.
  EXPECT_NEAR(cmp::track3_significance(3.28, 3.2787, 10), 0.0013 * std::sqrt(10.0), 1e-12);
  EXPECT_GE(cmp::track3_significance(3.28, 3.2787, 10), cmp::kTrack3Margin);
  // 0.0012 below over 10 runs is not enough (0.0038), over 12 it is (0.00416).
  EXPECT_LT(cmp::track3_significance(3.28, 3.2788, 10), cmp::kTrack3Margin);
  EXPECT_GE(cmp::track3_significance(3.28, 3.2788, 12), cmp::kTrack3Margin);
  // Newton-Muon's published 15 runs at mean 3.27852: 0.00148 * sqrt(15) = 0.00573.
  EXPECT_GE(cmp::track3_significance(3.28, 3.27852, 15), cmp::kTrack3Margin);
  EXPECT_LT(cmp::track3_significance(3.28, 3.2805, 4), 0.0);
}
