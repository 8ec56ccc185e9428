// The second moment of one layer's input, as Newton-Muon keeps it (Track 3 #15):
// `blocks` independent n x n statistics over contiguous n-wide column blocks of the
// input (one block except for mlp.proj, whose 4·d-wide input Track 3 splits in four).
//   capture (each micro-batch of a refresh step):  A_b += X_b^T X_b / tokens;  count += 1
//   refresh:  K = A / count;  C += beta (K - C)  (skipped when count == 0);
//             P = (C + r I)^-1 by Cholesky, r = ridge tr(C)/n + ridge_eps;
//             P = I where the factorization fails;  A = 0, count = 0
//   every step after the first refresh:  G_b <- G_b P_b  for each column block of G.
// Everything is fp32, as upstream; the Cholesky is LAPACK's spotrf/spotri.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace speedrun::optim {

class InputStatistic {
 public:
  // Input width blocks * block_width; C starts as initial_scale * I, P as I.
  InputStatistic(int64_t block_width, int64_t blocks, double initial_scale);

  int64_t block_width() const { return n_; }
  int64_t blocks() const { return blocks_; }
  int64_t width() const { return n_ * blocks_; }

  // input: (tokens, width) f32 on the CPU.
  void accumulate(const Tensor& input);
  // A (all blocks) followed by count, as one f32 buffer: what the ranks sum before a refresh.
  Tensor accumulators() { return Tensor::of(acc_.data(), {static_cast<int64_t>(acc_.size())}); }
  double count() const { return acc_.back(); }

  // Returns the number of blocks whose Cholesky factorization failed (their P is I).
  int64_t refresh(double beta, double ridge, double ridge_eps);
  bool has_inverse() const { return has_inverse_; }

  // out (rows, width) = g (rows, width) times blockdiag(P_0, ..., P_{blocks-1}).
  void precondition(const float* g, float* out, int64_t rows) const;

  // The EMA C and the inverse P of every block, (blocks, n, n) row-major, writable (for
  // checkpoints: with has_inverse, the whole state between steps, A and count being zero
  // then); set_has_inverse restores whether a refresh has happened.
  float* covariances() { return cov_.data(); }
  float* inverses() { return inv_.data(); }
  void set_has_inverse(bool has) { has_inverse_ = has; }

  // Row-major n x n views, for tests.
  const float* accumulator(int64_t block) const { return acc_.data() + block * n_ * n_; }
  const float* covariance(int64_t block) const { return cov_.data() + block * n_ * n_; }
  const float* inverse(int64_t block) const { return inv_.data() + block * n_ * n_; }

 private:
  int64_t n_, blocks_;
  std::vector<float> acc_;  // blocks * n * n, then the count
  std::vector<float> cov_, inv_, work_;
  bool has_inverse_ = false;
};

}  // namespace speedrun::optim
