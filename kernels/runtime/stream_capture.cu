// capture_without_sync (kernels/runtime/stream_capture.h). Never run on a GPU yet.
#include <exception>

#include "kernels/runtime/context.cuh"
#include "kernels/runtime/cuda_check.cuh"
#include "kernels/runtime/stream_capture.h"

namespace speedrun::cuda {

namespace {

// Restores cuda::stream() and destroys the fresh stream on every path out.
struct FreshStream {
  cudaStream_t previous = stream();
  cudaStream_t s = nullptr;
  FreshStream() {
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    set_stream(s);
  }
  ~FreshStream() {
    set_stream(previous);
    cudaStreamSynchronize(s);
    cudaStreamDestroy(s);
  }
};

}  // namespace

CaptureResult capture_without_sync(const std::function<void()>& fn) {
  CUDA_CHECK(cudaDeviceSynchronize());  // nothing of the caller's is in flight on the new stream's inputs
  FreshStream fresh;
  fn();  // warm-up, eager
  CUDA_CHECK(cudaStreamSynchronize(fresh.s));

  CaptureResult result;
  CUDA_CHECK(cudaStreamBeginCapture(fresh.s, cudaStreamCaptureModeGlobal));
  try {
    fn();
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(fresh.s, &graph);
  if (result.error.empty() && end != cudaSuccess) result.error = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(end);
  if (result.error.empty() && graph != nullptr) {
    size_t nodes = 0;
    CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &nodes));
    result.nodes = nodes;
    result.ok = true;
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  cudaGetLastError();  // a failed capture leaves a (non-sticky) error behind: clear it
  return result;
}

}  // namespace speedrun::cuda
