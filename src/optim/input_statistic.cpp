#include "optim/input_statistic.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <cblas.h>

// LAPACK (OpenBLAS ships it; Debian has no lapacke.h for the OpenMP flavour).
extern "C" {
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info);
void spotri_(const char* uplo, const int* n, float* a, const int* lda, int* info);
}

namespace speedrun::optim {

namespace {

void set_identity(float* m, int64_t n, float value) {
  std::fill(m, m + n * n, 0.0f);
  for (int64_t i = 0; i < n; ++i) m[i * n + i] = value;
}

}  // namespace

InputStatistic::InputStatistic(int64_t block_width, int64_t blocks, double initial_scale)
    : n_(block_width), blocks_(blocks) {
  if (n_ <= 0 || blocks_ <= 0) throw std::invalid_argument("InputStatistic: empty statistic");
  const auto nn = static_cast<size_t>(n_ * n_);
  acc_.assign(nn * static_cast<size_t>(blocks_) + 1, 0.0f);
  cov_.resize(nn * static_cast<size_t>(blocks_));
  inv_.resize(cov_.size());
  work_.resize(nn);
  for (int64_t b = 0; b < blocks_; ++b) {
    set_identity(cov_.data() + b * n_ * n_, n_, static_cast<float>(initial_scale));
    set_identity(inv_.data() + b * n_ * n_, n_, 1.0f);
  }
}

void InputStatistic::accumulate(const Tensor& input) {
  if (input.dtype != DType::f32 || input.device != Device::cpu || input.ndim != 2 || input.size(1) != width())
    throw std::invalid_argument("InputStatistic::accumulate: expected a (tokens, " + std::to_string(width()) +
                                ") f32 CPU tensor, got " + input.shape_string());
  const int64_t tokens = input.size(0);
  if (tokens == 0) return;
  const float* x = input.data<float>();
  const float scale = 1.0f / static_cast<float>(tokens);
  for (int64_t b = 0; b < blocks_; ++b) {
    // A_b += (1/tokens) X_b^T X_b, X_b the b-th n-wide column block (leading dimension width).
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(n_), static_cast<int>(n_),
                static_cast<int>(tokens), scale, x + b * n_, static_cast<int>(width()), x + b * n_,
                static_cast<int>(width()), 1.0f, acc_.data() + b * n_ * n_, static_cast<int>(n_));
  }
  acc_.back() += 1.0f;
}

int64_t InputStatistic::refresh(double beta, double ridge, double ridge_eps) {
  const float count = acc_.back();
  // Upstream divides by max(count, 1) and skips the EMA of a statistic nobody captured.
  const float inv_count = 1.0f / std::max(count, 1.0f);
  const float alpha = count > 0.0f ? static_cast<float>(beta) : 0.0f;
  const int n = static_cast<int>(n_);
  int64_t failures = 0;
  for (int64_t b = 0; b < blocks_; ++b) {
    const float* a = acc_.data() + b * n_ * n_;
    float* c = cov_.data() + b * n_ * n_;
    float* p = inv_.data() + b * n_ * n_;
    for (int64_t i = 0; i < n_ * n_; ++i) c[i] += alpha * (a[i] * inv_count - c[i]);  // lerp(C, K, alpha)
    float trace = 0.0f;
    for (int64_t i = 0; i < n_; ++i) trace += c[i * n_ + i];
    const float r = static_cast<float>(static_cast<double>(trace) / static_cast<double>(n_) * ridge + ridge_eps);
    std::copy(c, c + n_ * n_, work_.begin());
    for (int64_t i = 0; i < n_; ++i) work_[static_cast<size_t>(i * n_ + i)] += r;
    // Symmetric, so row- vs column-major does not matter; 'L' fills one triangle of the
    // inverse, mirrored below.
    int info = 0;
    spotrf_("L", &n, work_.data(), &n, &info);
    if (info == 0) spotri_("L", &n, work_.data(), &n, &info);
    if (info != 0) {
      set_identity(p, n_, 1.0f);
      ++failures;
      continue;
    }
    // Column-major lower = row-major upper: entries (i, j) with j >= i hold the inverse.
    for (int64_t i = 0; i < n_; ++i)
      for (int64_t j = 0; j < n_; ++j) p[i * n_ + j] = j >= i ? work_[i * n_ + j] : work_[j * n_ + i];
  }
  std::fill(acc_.begin(), acc_.end(), 0.0f);
  has_inverse_ = true;
  return failures;
}

void InputStatistic::precondition(const float* g, float* out, int64_t rows) const {
  const int w = static_cast<int>(width()), n = static_cast<int>(n_);
  for (int64_t b = 0; b < blocks_; ++b) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), n, n, 1.0f, g + b * n_, w,
                inv_.data() + b * n_ * n_, n, 0.0f, out + b * n_, w);
  }
}

}  // namespace speedrun::optim
