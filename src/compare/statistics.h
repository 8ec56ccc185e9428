// Statistics of a comparison: mean and sample standard deviation over seeds, Welch's
// unequal-variance t-test (p-value from the Student t distribution, computed through
// the regularized incomplete beta function), and the Track 3 significance check.
#pragma once

#include <vector>

namespace speedrun::compare {

struct Moments {
  int n = 0;
  double mean = 0.0;  // NaN when n == 0
  double std = 0.0;   // sample standard deviation (n - 1); NaN when n < 2
};
Moments moments(const std::vector<double>& xs);

// I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1.
double regularized_incomplete_beta(double a, double b, double x);

// Two-sided p-value P(|T| >= |t|) of Student's t distribution with `df` (> 0, not
// necessarily integer) degrees of freedom.
double student_t_two_sided_p(double t, double df);

struct WelchResult {
  double t = 0.0;   // (mean_a - mean_b) / standard error
  double df = 0.0;  // Welch–Satterthwaite degrees of freedom
  double p = 0.0;   // two-sided
};
// Welch's t-test of a against b. Undefined (returns false) when either sample has fewer
// than two values, or both have zero variance (the standard error is zero).
bool welch_t_test(const std::vector<double>& a, const std::vector<double>& b, WelchResult& out);

// Track 3's significance check: (target - mean) * sqrt(n), to be >= kTrack3Margin.
double track3_significance(double target, double mean, int n);
inline constexpr double kTrack3Margin = 0.004;

}  // namespace speedrun::compare
