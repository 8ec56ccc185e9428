// Proof that a piece of host code issues no host synchronization: run it under a CUDA stream
// capture, which fails on any synchronizing call (cudaMemcpy from pageable memory,
// cudaStreamSynchronize, cudaDeviceSynchronize, an event wait on captured work, cudaMalloc/
// cudaFree of the global capture mode). Also says whether the work could become a CUDA graph.
// Plain C++ (host code and tests include it); defined in kernels/runtime/stream_capture.cu,
// CUDA builds only. Never run on a GPU yet.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace speedrun::cuda {

struct CaptureResult {
  bool ok = false;     // the capture completed: fn() issued no synchronization
  std::string error;   // else: the first error (a CUDA error's text, or the exception fn threw)
  size_t nodes = 0;    // the captured graph's node count (ok only)
};

// Makes a fresh stream cuda::stream() (cudaStreamNonBlocking), runs fn() on it once eagerly
// (warm-up: workspaces grow there, which a capture would refuse) and waits for it, then
// runs fn() again under cudaStreamBeginCapture(cudaStreamCaptureModeGlobal) and ends the
// capture. The captured graph is never launched. cuda::stream() is restored on every path.
// An error in the warm-up run is rethrown (it is not a capture failure).
CaptureResult capture_without_sync(const std::function<void()>& fn);

}  // namespace speedrun::cuda
