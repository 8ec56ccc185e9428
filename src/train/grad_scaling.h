// Multiplies a step's gradients by the architecture's factor (model::gradient_scale: record26
// averages over the batch's sequences as upstream averages over its ranks) at the moment each
// becomes final, before anything reads it: placed between the model's backward and the
// overlapped reduction (dist::GradBucketer), it scales a parameter's local gradient, summed
// over the step's micro-batches, just before passing the report on, so a collective started
// by that report already reduces scaled gradients; finish() scales the rest (every parameter
// when nothing was reported: one process, or train.grad_bucket_mb = 0).
//
// Scaling each rank's sum before the sum over ranks, or the sum after it, are both the
// average; with a power-of-two factor (record26's configs: 1/8, 1/4) the two are bitwise
// equal, so runs with any rank count and bucket size keep their bitwise agreements.
// The scaling is ops::scaled_sum on the gradient's device (on CUDA kernels/ops/scale.cu, not
// yet run on a GPU).
#pragma once

#include <vector>

#include "model/grad_ready_sink.h"
#include "model/model.h"

namespace speedrun::train {

class GradientScaler final : public model::GradReadySink {
 public:
  // `next` (may be null) hears every report after the scaling. The model outlives this.
  GradientScaler(model::Model& model, double scale, model::GradReadySink* next);

  // Scales parameter `index`'s gradient (once per step), then reports it to `next`.
  void gradient_final(size_t index) override;
  // After the step's last backward: scales every gradient not reported, and starts the next step.
  void finish();
  double scale() const { return scale_; }

 private:
  void scale_gradient(size_t index);
  model::Model& model_;
  double scale_;
  model::GradReadySink* next_;
  std::vector<bool> done_;
};

}  // namespace speedrun::train
