// The model's side of overlapped gradient reduction (dist/grad_buckets.h): during the
// backward pass of a step's LAST micro-batch, the model reports each parameter whose
// gradient will not change again in this step, in the order the backward finishes them.
// Model-agnostic: any model passes one to its backward, as it passes a LayerInputSink
// to its forward, and calls it with its own parameter indices (the order of its
// ParamLayout). A model that never calls it stays correct: whoever waits on a gradient
// that was not reported starts its reduction then (after the backward, as without overlap).
#pragma once

#include <cstddef>

namespace speedrun::model {

class GradReadySink {
 public:
  virtual ~GradReadySink() = default;
  // Parameter `index`'s gradient is final for this step. On CUDA: the kernels that write
  // it have been issued on the compute stream (not necessarily finished); a reduction
  // started now must be ordered after them on that stream. Called once per parameter
  // per step.
  virtual void gradient_final(size_t index) = 0;
};

}  // namespace speedrun::model
