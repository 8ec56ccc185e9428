// Token embedding: a row gather forward, a deterministic scatter-add backward.
//
// Forward launch: grid-stride over rows*channels elements, 256 threads; consecutive threads
// copy consecutive channels of one row (coalesced reads of the table row and writes).
//
// Backward (no float atomics, the same bits on every run):
//  1. iota: idx[n] = n.
//  2. CUB DeviceRadixSort::SortPairs over (token, n): stable, so each vocabulary id's
//     positions come out in increasing token order.
//  3. segment_sum: one block (256 threads) per position of the sorted list; a block whose
//     position is not the first of its token's run exits at once. The first block of a
//     run walks the run in order, each thread summing its channels (c, c+256, ...) of
//     dout[idx[j]] in fp32, then adds the sum to dtable[token] once. Different runs write
//     different table rows, so no two blocks touch one element. A frequent token's run is
//     walked by one block serially: a few thousand rows at most for Track 3 batches.
// Temporaries (sorted keys, indices, CUB scratch) live in cuda::workspace().
#include <cub/cub.cuh>

#include "kernels/runtime/common.cuh"
#include "kernels/runtime/context.cuh"
#include "kernels/ops/ops_cuda.h"

namespace speedrun::cuda {
namespace {

constexpr int kThreads = 256;

template <class Out, class Table>
__global__ void embedding_forward_kernel(Out* out, const int32_t* tokens, const Table* table, int64_t rows,
                                         int64_t channels, int64_t vocab) {
  const int64_t n = rows * channels;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / channels, c = i % channels;
    const int32_t tok = tokens[r];
    const float v = (tok >= 0 && tok < vocab) ? to_f32(table[static_cast<int64_t>(tok) * channels + c])
                                              : __int_as_float(0x7fc00000);
    out[i] = from_f32<Out>(v);
  }
}

__global__ void iota_kernel(int32_t* idx, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    idx[i] = static_cast<int32_t>(i);
}

template <class T>
__global__ void segment_sum_kernel(float* dtable, const int32_t* sorted_tokens, const int32_t* sorted_idx,
                                   const T* dout, int64_t rows, int64_t channels, int64_t vocab) {
  const int64_t start = blockIdx.x;
  const int32_t tok = sorted_tokens[start];
  if (start > 0 && sorted_tokens[start - 1] == tok) return;  // not the first of its run
  if (tok < 0 || tok >= vocab) return;
  for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = start; j < rows && sorted_tokens[j] == tok; ++j) {
      acc += to_f32(dout[static_cast<int64_t>(sorted_idx[j]) * channels + c]);
    }
    dtable[static_cast<int64_t>(tok) * channels + c] += acc;
  }
}

}  // namespace

void embedding_forward(DType act, void* out, const int32_t* tokens, DType table_type, const void* table,
                       int64_t rows, int64_t channels, int64_t vocab) {
  if (rows <= 0 || channels <= 0) return;
  with_act(act, "embedding_forward", [&]<class O>(std::type_identity<O>) {
    with_act(table_type, "embedding_forward", [&]<class W>(std::type_identity<W>) {
      embedding_forward_kernel<O, W><<<grid_for(rows * channels, kThreads), kThreads, 0, stream()>>>(
          static_cast<O*>(out), tokens, static_cast<const W*>(table), rows, channels, vocab);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void embedding_backward(float* dtable, const int32_t* tokens, DType act, const void* dout, int64_t rows,
                        int64_t channels, int64_t vocab) {
  if (rows <= 0 || channels <= 0) return;
  if (rows > INT32_MAX) throw std::invalid_argument("ops::embedding_backward: more than 2^31 tokens");
  const int n = static_cast<int>(rows);
  // All 32 key bits (4 radix passes): ids are not range-checked on the device, and an id
  // with high bits set must not alias a valid one. (Narrowing end_bit to ceil(log2(vocab))
  // would save two passes once ids are known to be valid.)
  const int end_bit = 32;

  size_t cub_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, cub_bytes, static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), n, 0, end_bit, stream()));
  // Workspace layout: [idx | sorted_tokens | sorted_idx | CUB scratch], each 256-byte aligned.
  auto align = [](size_t b) { return (b + 255) & ~static_cast<size_t>(255); };
  const size_t list_bytes = align(static_cast<size_t>(n) * sizeof(int32_t));
  char* base = static_cast<char*>(workspace(3 * list_bytes + align(cub_bytes)));
  int32_t* idx = reinterpret_cast<int32_t*>(base);
  int32_t* sorted_tokens = reinterpret_cast<int32_t*>(base + list_bytes);
  int32_t* sorted_idx = reinterpret_cast<int32_t*>(base + 2 * list_bytes);
  void* cub_scratch = base + 3 * list_bytes;

  iota_kernel<<<grid_for(rows, kThreads), kThreads, 0, stream()>>>(idx, rows);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_scratch, cub_bytes, tokens, sorted_tokens, idx, sorted_idx, n, 0,
                                             end_bit, stream()));
  with_act(act, "embedding_backward", [&]<class T>(std::type_identity<T>) {
    segment_sum_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream()>>>(
        dtable, sorted_tokens, sorted_idx, static_cast<const T*>(dout), rows, channels, vocab);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace speedrun::cuda
