// Hands the layer inputs captured in one step's forward passes to every optimizer that
// asked for them (Optimizer::capture_sink), or passes no sink at all when none did, so
// that steps without capture cost nothing.
#pragma once

#include <memory>
#include <vector>

#include "model/model.h"
#include "optim/optimizer.h"

namespace speedrun::optim {

class CaptureFanOut final : public model::LayerInputSink {
 public:
  CaptureFanOut(const std::vector<std::unique_ptr<Optimizer>>& optimizers, int64_t step) {
    for (const auto& o : optimizers)
      if (model::LayerInputSink* s = o->capture_sink(step)) sinks_.push_back(s);
  }
  // Also hand the inputs to `extra` (tests and tools that record them).
  void add(model::LayerInputSink* extra) { sinks_.push_back(extra); }
  // What to pass to Gpt::forward_backward: null when nobody captures.
  model::LayerInputSink* sink() {
    if (sinks_.empty()) return nullptr;
    return sinks_.size() == 1 ? sinks_.front() : this;
  }
  void capture(int64_t layer, model::CapturePoint point, const Tensor& input) override {
    for (model::LayerInputSink* s : sinks_) s->capture(layer, point, input);
  }

 private:
  std::vector<model::LayerInputSink*> sinks_;
};

}  // namespace speedrun::optim
