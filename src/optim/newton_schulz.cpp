#include "optim/newton_schulz.h"

#include <cblas.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

namespace speedrun::optim {

NewtonSchulzSpec newton_schulz_spec(const config::MuonSettings& s) {
  NewtonSchulzSpec spec;
  if (s.ns_preset == "quintic") spec = {3.4445, -4.7750, 2.0315, 5, false};
  else spec = {2.0, -1.5, 0.5, 12, false};
  if (s.ns_coefficients) spec.a = (*s.ns_coefficients)[0], spec.b = (*s.ns_coefficients)[1], spec.c = (*s.ns_coefficients)[2];
  if (s.ns_steps) spec.steps = *s.ns_steps;
  spec.bf16 = s.ns_precision == "bf16";
  return spec;
}

float round_to_bf16(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  if ((bits & 0x7F800000u) == 0x7F800000u) return x;  // inf / nan unchanged
  bits += 0x7FFFu + ((bits >> 16) & 1u);               // round to nearest, ties to even
  return std::bit_cast<float>(bits & 0xFFFF0000u);
}

namespace {

void round_all(std::vector<float>& v, bool bf16) {
  if (!bf16) return;
  for (float& x : v) x = round_to_bf16(x);
}

// y = alpha * x + beta * y elementwise, each product and the sum rounded like torch's
// bf16 ops (a*X and B@X are separate bf16 tensors before the add).
void axpby(float alpha, const std::vector<float>& x, float beta, std::vector<float>& y, bool bf16) {
  const size_t n = y.size();
  if (!bf16) {
    for (size_t i = 0; i < n; ++i) y[i] = alpha * x[i] + beta * y[i];
    return;
  }
  for (size_t i = 0; i < n; ++i)
    y[i] = round_to_bf16(round_to_bf16(alpha * x[i]) + round_to_bf16(beta * y[i]));
}

}  // namespace

void newton_schulz_cpu(const float* g, float* out, int64_t rows, int64_t cols, const NewtonSchulzSpec& spec) {
  const bool transposed = rows > cols;
  const int64_t r = transposed ? cols : rows;  // work on the wide orientation (r <= c)
  const int64_t c = transposed ? rows : cols;
  std::vector<float> x(static_cast<size_t>(r * c));
  if (transposed) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) x[j * c + i] = g[i * cols + j];
  } else {
    std::memcpy(x.data(), g, x.size() * sizeof(float));
  }
  round_all(x, spec.bf16);
  double sumsq = 0.0;
  for (float v : x) sumsq += static_cast<double>(v) * v;
  float denom = static_cast<float>(std::sqrt(sumsq));
  if (spec.bf16) denom = round_to_bf16(round_to_bf16(denom) + 1e-7f);
  else denom += 1e-7f;
  for (float& v : x) v = spec.bf16 ? round_to_bf16(v / denom) : v / denom;

  // Python evaluates `b * A + c * A @ A` as b*A + ((c*A) @ A), and `a * X + B @ X`
  // as (a*X) + (B@X); in bf16 mode every one of those tensors is rounded, in that order.
  std::vector<float> A(static_cast<size_t>(r * r)), cA(A.size()), B(A.size()), BX(x.size());
  const float a = static_cast<float>(spec.a), b = static_cast<float>(spec.b), cc = static_cast<float>(spec.c);
  for (int64_t it = 0; it < spec.steps; ++it) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, r, c, 1.0f, x.data(), c, x.data(), c, 0.0f, A.data(), r);
    round_all(A, spec.bf16);
    for (size_t i = 0; i < A.size(); ++i) cA[i] = cc * A[i];
    round_all(cA, spec.bf16);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, r, r, 1.0f, cA.data(), r, A.data(), r, 0.0f, B.data(), r);
    round_all(B, spec.bf16);
    axpby(b, A, 1.0f, B, spec.bf16);  // B = b*A + (cA @ A)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, c, r, 1.0f, B.data(), r, x.data(), c, 0.0f, BX.data(), c);
    round_all(BX, spec.bf16);
    axpby(a, x, 1.0f, BX, spec.bf16);  // X = a*X + (B @ X)
    x.swap(BX);
  }
  if (transposed) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) out[i * cols + j] = x[j * c + i];
  } else {
    std::memcpy(out, x.data(), x.size() * sizeof(float));
  }
}

}  // namespace speedrun::optim
