// Helpers shared by the ops tests (tests/unit/ops/test_<op>.cpp): seeded random inputs, tensor views of
// std::vectors, finite-difference gradient checks, comparisons with stated tolerances, and
// running an op under a given number of threads.
#pragma once

#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "build_info.h"
#include "core/tensor.h"
#include "ops/ops.h"
#include "test_support.h"

namespace speedrun::test {

class OpsTest : public ::testing::Test {
 protected:
  const uint64_t seed_ = test_seed();
  std::mt19937_64 rng_{seed_};
  const ::testing::ScopedTrace trace_{__FILE__, __LINE__,
                                      "seed " + std::to_string(seed_) + " (SPEEDRUN_TEST_SEED replays it)"};

  // Uniform in [lo, hi): nonzero with probability 1.
  std::vector<double> uniform(int64_t n, double lo = -1.0, double hi = 1.0) {
    std::uniform_real_distribution<double> dist(lo, hi);
    std::vector<double> v(static_cast<size_t>(n));
    for (double& x : v) x = dist(rng_);
    return v;
  }
  // |x| uniform in [lo, hi] with a random sign: keeps inputs away from a kink at 0.
  std::vector<double> away_from_zero(int64_t n, double lo, double hi) {
    std::vector<double> v = uniform(n, lo, hi);
    std::bernoulli_distribution sign(0.5);
    for (double& x : v) x = sign(rng_) ? -x : x;
    return v;
  }
  std::vector<int32_t> indices(int64_t n, int32_t limit) {
    std::uniform_int_distribution<int32_t> dist(0, limit - 1);
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int32_t& x : v) x = dist(rng_);
    return v;
  }
};

// Lists of test shapes: for (auto [rows, cols] : Shapes<2>{{1, 1}, {7, 13}}).
template <size_t N>
using Shapes = std::initializer_list<std::array<int64_t, N>>;

template <class T>
Tensor view(std::vector<T>& v, std::initializer_list<int64_t> shape) {
  return Tensor::of(v.data(), shape);
}
// Inputs the op only reads (Tensor views are non-owning and untyped by constness).
template <class T>
Tensor view(const std::vector<T>& v, std::initializer_list<int64_t> shape) {
  return Tensor::of(v.data(), shape);
}

template <class To, class From>
std::vector<To> cast(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

// Rounds to float and back: the float op and the double reference then see the same inputs.
inline std::vector<double> float_representable(std::vector<double> v) {
  for (double& x : v) x = static_cast<double>(static_cast<float>(x));
  return v;
}

// L = sum_i r_i out_i, accumulated in long double so that the rounding of the sum itself
// stays far below what the finite differences resolve.
inline double weighted_sum(const std::vector<double>& r, const std::vector<double>& out) {
  long double sum = 0;
  for (size_t i = 0; i < out.size(); ++i) sum += static_cast<long double>(r[i]) * out[i];
  return static_cast<double>(sum);
}

// Finite-difference check of a gradient, in double.
// Central differences with step h on an objective L of unit-scale inputs have error
//   h^2/6 |L'''|  (truncation, ~1e-13 here)  +  eps |L_changed| / h  (rounding, eps = 1.1e-16),
// where L_changed is the part of L whose rounding changes when one input moves: a few
// outputs of size ~1, so ~1e-10 .. 1e-9 absolute. The gradients we check are ~1e-2 .. 1,
// so we require for every element
//   |numeric - analytic| <= kFdTolerance * (|analytic| + max_j |analytic_j|)
// with kFdTolerance = 1e-6: a 10x-1000x margin over that error, while any real mistake
// (a missing term, a wrong factor, a wrong index) gives relative errors of 1e-3 .. 1.
inline constexpr double kFdStep = 1e-6;
inline constexpr double kFdTolerance = 1e-6;

// `absolute` widens the bound for objectives whose own rounding is larger (see its callers).
inline void expect_gradient(const std::string& what, std::vector<double>& x, const std::vector<double>& analytic,
                            const std::function<double()>& objective, double tolerance = kFdTolerance,
                            double absolute = 0.0) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  double scale = 0;
  for (double g : analytic) scale = std::max(scale, std::fabs(g));
  ASSERT_GT(scale, 0.0) << what << ": the analytic gradient is all zeros, nothing is checked";
  double worst = 0;
  size_t worst_i = 0;
  double worst_numeric = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    const double above = saved + kFdStep, below = saved - kFdStep;
    x[i] = above;
    const double plus = objective();
    x[i] = below;
    const double minus = objective();
    x[i] = saved;
    // Divide by the step actually taken: for |x| ~ 100, x + h is h only to ~1e-8 relative.
    const double numeric = (plus - minus) / (above - below);
    const double err = std::fabs(numeric - analytic[i]) / (std::fabs(analytic[i]) + scale + absolute / tolerance);
    if (!(err <= worst)) {  // also catches NaN
      worst = err;
      worst_i = i;
      worst_numeric = numeric;
    }
  }
  EXPECT_LE(worst, tolerance) << what << ": element " << worst_i << " analytic " << analytic[worst_i]
                              << " numeric " << worst_numeric << " (gradient scale " << scale << ")";
}

// |got_i - want_i| <= bound_i for every element, reporting the worst ratio.
template <class T>
void expect_within(const std::string& what, const std::vector<T>& got, const std::vector<double>& want,
                   const std::function<double(size_t)>& bound) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double ratio = std::fabs(static_cast<double>(got[i]) - want[i]) / bound(i);
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_i = i;
    }
  }
  EXPECT_LE(worst, 1.0) << what << ": element " << worst_i << " got " << static_cast<double>(got[worst_i])
                        << " want " << want[worst_i] << " bound " << bound(worst_i);
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// Relative-to-scale comparison: |got_i - want_i| <= tol * (|want_i| + max(max |want|, min_scale)).
// min_scale is the size of the terms a value is made of, for outputs that can be exactly
// zero by cancellation (a one-token softmax's gradient): there the reference's zero is exact
// only because its rounding happened to cancel, and another summation order leaves a
// residue of tol times those terms.
template <class T>
void expect_near_rel(const std::string& what, const std::vector<T>& got, const std::vector<double>& want,
                     double tol, double min_scale = 0) {
  double scale = min_scale;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  expect_within(what, got, want, [&](size_t i) { return tol * (std::fabs(want[i]) + scale) + 1e-300; });
}

template <class T>
void expect_bitwise_equal(const std::string& what, const std::vector<T>& a, const std::vector<T>& b) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t differing = 0, first = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      if (differing++ == 0) first = i;
    }
  }
  EXPECT_EQ(differing, 0u) << what << ": " << differing << " elements differ, first " << first << " ("
                           << static_cast<double>(a[first]) << " vs " << static_cast<double>(b[first]) << ")";
}

// Runs fn with `threads` OpenMP threads (OpenBLAS follows, being the OpenMP flavour; we set
// it too in case it is not), then restores the previous count.
template <class Fn>
void with_threads(int threads, Fn&& fn) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  fn();
  omp_set_num_threads(previous);
  openblas_set_num_threads(previous);
}

// A CUDA-device view of host memory, for checking that ops refuse CUDA tensors (it is never
// dereferenced: the op throws before).
inline Tensor on_cuda(Tensor t) {
  t.device = Device::cuda;
  return t;
}

// EXPECT that `statement` throws std::invalid_argument whose message contains every given fragment.
#define EXPECT_INVALID_ARGUMENT(statement, ...)                                                          \
  do {                                                                                                   \
    try {                                                                                                \
      statement;                                                                                         \
      ADD_FAILURE() << "expected std::invalid_argument from " #statement;                                \
    } catch (const std::invalid_argument& e) {                                                           \
      for (const char* fragment : {__VA_ARGS__}) {                                                       \
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)                               \
            << "message \"" << e.what() << "\" lacks \"" << fragment << "\"";                            \
      }                                                                                                  \
    } catch (const std::exception& e) {                                                                  \
      ADD_FAILURE() << "expected std::invalid_argument from " #statement ", got: " << e.what();          \
    }                                                                                                    \
  } while (0)

// In a CPU-only build, EXPECT that `statement` (an op on CUDA-marked host memory) throws
// std::logic_error naming the op and CUDA. In a CUDA build the op would run its kernels on
// host pointers, so the statement is not executed: the CudaOpsTest cases cover those ops.
#if SPEEDRUN_HAVE_CUDA
#define EXPECT_CUDA_NOT_IMPLEMENTED(statement, op_name) \
  do {                                                  \
  } while (0)
#else
#define EXPECT_CUDA_NOT_IMPLEMENTED(statement, op_name)                                                  \
  do {                                                                                                   \
    try {                                                                                                \
      statement;                                                                                         \
      ADD_FAILURE() << "expected std::logic_error from " #statement;                                     \
    } catch (const std::invalid_argument& e) {                                                           \
      ADD_FAILURE() << "expected std::logic_error (CUDA not implemented), got invalid_argument: " << e.what(); \
    } catch (const std::logic_error& e) {                                                                \
      EXPECT_NE(std::string(e.what()).find(op_name), std::string::npos) << e.what();                     \
      EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();                      \
    }                                                                                                    \
  } while (0)
#endif

}  // namespace speedrun::test
