// AdamW on the device (optim_cuda.h): one launch per step over every parameter of the
// group. The host cuts the parameters into chunks of at most kChunk elements once, at
// construction, and uploads the chunk table; block i updates chunk i. The per-element
// arithmetic is the CPU's (src/optim/adamw.cpp) with every operation rounded separately
// (__fmul_rn etc. are never contracted into FMAs; the CPU build has none either), so a
// step gives the CPU's bits when both start from the same state. A segment with a bf16
// weight copy (AdamWSegment::copy) gets it stored from the new value in the same pass
// (never run on a GPU yet).
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "core/buffer.h"
#include "core/device_memory.h"
#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/optim/optim_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int64_t kChunk = 1 << 16;
constexpr int kThreads = 256;

struct Chunk {
  float* p;
  const float* g;
  float* m;
  float* v;
  bf16* copy;  // the segment's bf16 weight copy at this chunk, or null
  int64_t n;
};

__global__ void adamw_kernel(const Chunk* __restrict__ chunks, AdamWScalars s) {
  const Chunk c = chunks[blockIdx.x];
  const float one_minus_b1 = 1.0f - s.b1, one_minus_b2 = 1.0f - s.b2;
  for (int64_t i = threadIdx.x; i < c.n; i += blockDim.x) {
    const float g = c.g[i];
    float p = __fmul_rn(c.p[i], s.decay);
    const float m = __fadd_rn(c.m[i], __fmul_rn(one_minus_b1, __fsub_rn(g, c.m[i])));  // lerp(m, g, 1 - b1)
    const float v = __fadd_rn(__fmul_rn(s.b2, c.v[i]), __fmul_rn(__fmul_rn(one_minus_b2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bc2_sqrt), s.eps);
    p = __fsub_rn(p, __fdiv_rn(__fmul_rn(s.step_size, m), denom));
    c.m[i] = m;
    c.v[i] = v;
    c.p[i] = p;
    if (c.copy) c.copy[i] = from_f32<bf16>(p);  // uniform over the block: no divergence
  }
}

}  // namespace

struct AdamWDevice::Impl {
  Buffer moments;  // m for every element in group order, then v
  Buffer table;    // the Chunk table
  int64_t total = 0;
  unsigned chunks = 0;
};

AdamWDevice::AdamWDevice(const std::vector<AdamWSegment>& segments) : impl_(std::make_unique<Impl>()) {
  for (const AdamWSegment& s : segments) {
    if (s.n < 0 || (s.n > 0 && (!s.p || !s.g))) throw std::invalid_argument("AdamWDevice: bad segment");
    impl_->total += s.n;
  }
  impl_->moments = Buffer(Device::cuda, std::max<size_t>(1, 2 * static_cast<size_t>(impl_->total) * sizeof(float)));
  float* m = impl_->moments.as<float>();
  float* v = m + impl_->total;
  std::vector<Chunk> table;
  int64_t offset = 0;
  for (const AdamWSegment& s : segments) {
    for (int64_t a = 0; a < s.n; a += kChunk) {
      const int64_t o = offset + a;
      bf16* copy = s.copy ? static_cast<bf16*>(s.copy) + a : nullptr;
      table.push_back({s.p + a, s.g + a, m + o, v + o, copy, std::min(kChunk, s.n - a)});
    }
    offset += s.n;
  }
  impl_->chunks = static_cast<unsigned>(table.size());
  if (!table.empty()) {
    impl_->table = Buffer(Device::cuda, table.size() * sizeof(Chunk));
    device_copy(impl_->table.data(), table.data(), table.size() * sizeof(Chunk));  // once, at construction
  }
}

AdamWDevice::~AdamWDevice() = default;

void AdamWDevice::step(const AdamWScalars& s) {
  if (impl_->chunks == 0) return;
  adamw_kernel<<<impl_->chunks, kThreads, 0, stream()>>>(impl_->table.as<Chunk>(), s);
  CUDA_CHECK_LAUNCH();
}

size_t AdamWDevice::state_bytes() const { return 2 * static_cast<size_t>(impl_->total) * sizeof(float); }

Tensor AdamWDevice::first_moment() { return Tensor::of(impl_->moments.as<float>(), {impl_->total}, Device::cuda); }

Tensor AdamWDevice::second_moment() {
  return Tensor::of(impl_->moments.as<float>() + impl_->total, {impl_->total}, Device::cuda);
}

}  // namespace speedrun::cuda
