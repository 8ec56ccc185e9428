// The CUDA context shared by the kernels: the stream every kernel and library call is
// issued on, and a grow-only scratch buffer for temporaries (partial sums, sort buffers).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace speedrun::cuda {

// The stream all ops are issued on (the legacy default stream unless set_stream was called).
cudaStream_t stream();
void set_stream(cudaStream_t s);

// Scratch device memory of at least `bytes`, valid until the next call to workspace().
// Ops use it only for temporaries that die within one op; every use is ordered on stream().
// It grows with cudaMalloc (after cudaFree of the smaller one, which synchronizes): this
// happens only the first time a shape is seen, i.e. during warm-up, never in a steady step.
void* workspace(size_t bytes);

}  // namespace speedrun::cuda
