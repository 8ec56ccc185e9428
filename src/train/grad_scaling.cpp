#include "train/grad_scaling.h"

#include <stdexcept>
#include <string>

#include "ops/ops.h"

namespace speedrun::train {

GradientScaler::GradientScaler(model::Model& model, double scale, model::GradReadySink* next)
    : model_(model), scale_(scale), next_(next), done_(model.layout().params().size(), false) {}

void GradientScaler::scale_gradient(size_t index) {
  if (done_.at(index)) throw std::logic_error("gradient " + std::to_string(index) + " reported twice in a step");
  done_[index] = true;
  if (scale_ == 1.0) return;
  const Tensor g = model_.grad(index);
  ops::scaled_sum(g, scale_, g, 0.0, Tensor{});
}

void GradientScaler::gradient_final(size_t index) {
  scale_gradient(index);
  if (next_) next_->gradient_final(index);
}

void GradientScaler::finish() {
  for (size_t i = 0; i < done_.size(); ++i)
    if (!done_[i]) scale_gradient(i);
  done_.assign(done_.size(), false);
}

}  // namespace speedrun::train
