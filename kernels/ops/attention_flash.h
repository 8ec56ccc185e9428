// Host entry points of the FlashAttention-2-class bf16 attention for sm_90
// (kernels/ops/attention_flash.cu; the design is in that file's header). Plain C++: no CUDA
// header, so the ops layer may include it. Defined only in CUDA builds.
//
// Same tensors, layouts and semantics as cuda::attention_forward_tc / attention_backward_tc
// (kernels/ops/ops_cuda.h), so dispatch can pick either:
//   q, k, v, out, dout, dq, dk, dv: (B, T, H, D) bf16, contiguous, 16-byte aligned;
//   lse: (B, H, T) fp32, natural log: lse[b, h, t] = log sum_{s allowed} exp(scale q_t . k_s);
//   causal mask (s <= t); head_dim D in {64, 128}; any T >= 1; scale any finite float.
// Errors: std::invalid_argument for an unsupported head_dim, B * H > 65535, T > 2^31 - 1 or
// a pointer that is not 16-byte aligned; launch failures throw (CUDA_CHECK_LAUNCH).
// Launches go to cuda::stream(); nothing synchronizes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/ops/attention_mask.h"

namespace speedrun::cuda {

// out = softmax(scale q k^T + mask) v, and lse (see above).
void attention_flash_forward(void* out, float* lse, const void* q, const void* k, const void* v, int64_t batch,
                             int64_t seq, int64_t heads, int64_t head_dim, float scale);

// dq, dk, dv from dout and the forward's q, k, v, out, lse. Uses cuda::workspace() for
// attention_flash_backward_workspace_bytes(...) bytes (delta = rowsum(dout * out) and the
// fp32 dQ accumulator). dq is accumulated with fp32 atomics: its bits may differ from run to
// run (the order of the additions does); dk and dv are deterministic.
void attention_flash_backward(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                              const void* v, const void* out, const float* lse, int64_t batch, int64_t seq,
                              int64_t heads, int64_t head_dim, float scale);

// The same two under record #26's mask instead of the causal one (kernels/ops/attention_mask.h:
// causal AND same document AND a sliding window of block_size-token blocks; a (query tile, key
// tile) block the mask fully hides is skipped without loading it). mask.doc: (B, T) i32 on the
// device, nondecreasing along each row (not checked here), or null; mask.seq = T when doc is set.
// Rows that see no key (impossible under this mask: t always sees itself) would get out = 0,
// lse = -inf. Errors: those above, and std::invalid_argument for mask.seq != T or a window
// without a positive block_size. NOT YET RUN ON A GPU.
void attention_flash_forward_masked(void* out, float* lse, const void* q, const void* k, const void* v,
                                    int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                    const DocWindowMask& mask);
void attention_flash_backward_masked(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                                     const void* v, const void* out, const float* lse, int64_t batch, int64_t seq,
                                     int64_t heads, int64_t head_dim, float scale, const DocWindowMask& mask);

// Scratch bytes attention_flash_backward takes from cuda::workspace(): B H T floats of delta
// (rounded up to 256 bytes) + B T H D floats of dQ accumulator (192 MiB at Track 3's shape).
size_t attention_flash_backward_workspace_bytes(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim);

}  // namespace speedrun::cuda
