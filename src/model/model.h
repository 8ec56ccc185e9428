// The model interface: what the trainer, the optimizers, the benchmarks and the tools use
// of a network, whatever its architecture. Each architecture (config key model.arch) is one
// implementation over the same ops layer: model::Gpt (track3, model/gpt.h) and
// model::Record26 (record26, model/record26.h); model/registry.h makes the one a config
// names. Parameters and gradients live in flat f32 buffers with named views (ParamLayout),
// so optimizers see any architecture's parameters the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/tensor.h"
#include "model/grad_ready_sink.h"
#include "model/param_layout.h"

namespace speedrun::model {

// The inputs of the layers a matrix optimizer may precondition (Newton-Muon):
// the normed hidden h shared by q, k and v; the attention output y (attn.proj's
// input); the normed hidden before mlp.fc; relu(.)^2, the input of mlp.proj.
enum class CapturePoint { attn_qkv, attn_proj, mlp_fc, mlp_proj };
const char* capture_point_name(CapturePoint p);

// Receives layer inputs during the forward pass of a micro-batch, when one is passed
// to forward_backward (steps that do not capture pass none and pay nothing).
class LayerInputSink {
 public:
  virtual ~LayerInputSink() = default;
  // input: (tokens, in_features) in the activation dtype (f32, or bf16 on CUDA), on the
  // model's device, valid only during the call.
  virtual void capture(int64_t layer, CapturePoint point, const Tensor& input) = 0;
};

// Where a forward pass stands in the run: the 0-based optimizer step and the run's length
// (train.steps). Architectures whose forward changes over the run read it (record26's
// attention window grows with step / steps); track3 ignores it. steps == 0: not given
// (record26 then refuses to guess).
struct RunPosition {
  int64_t step = 0;
  int64_t steps = 0;
};

class Model {
 public:
  virtual ~Model() = default;

  virtual const config::ModelConfig& config() const = 0;
  virtual const ParamLayout& layout() const = 0;
  virtual Device device() const = 0;
  virtual DType activation_dtype() const = 0;
  virtual int64_t max_batch_seqs() const = 0;

  // Flat buffers (layout().total_numel() floats each) on the model's device.
  virtual float* params() = 0;
  virtual float* grads() = 0;
  Tensor param(const std::string& name) { return view(params(), layout().find(name)); }
  Tensor grad(const std::string& name) { return view(grads(), layout().find(name)); }
  Tensor param(size_t index) { return view(params(), layout().params()[index]); }
  Tensor grad(size_t index) { return view(grads(), layout().params()[index]); }
  // The whole flat gradient buffer as one tensor (for all-reduce).
  Tensor grads_tensor() { return Tensor(grads(), DType::f32, device(), {layout().total_numel()}); }

  // Initializes every parameter per the architecture's spec from `seed` (bitwise
  // reproducible: model/param_layout.h).
  virtual void init_parameters(uint64_t seed) = 0;
  virtual void zero_grad() = 0;
  // The parameters were changed outside the model (optimizer step, broadcast, direct
  // writes): whatever the model derived from them (bf16 copies) is remade at the next forward.
  virtual void weights_changed() = 0;
  // The bf16 copy of parameter `index` (layout order) that the forward reads in place of its
  // f32 master, when the model lets the optimizers' update kernels write it
  // (SPEEDRUN_WEIGHT_COPIES=optimizer, model/weight_copies.h); else empty. A (rows, cols)
  // bf16 tensor on the model's device, valid for the model's lifetime. Default: none.
  virtual Tensor weight_copy(size_t index) { return {}; }
  // As weights_changed(), except that the copies of the parameters listed in
  // `copies_written` (layout indices) were written by the optimizer step itself from the new
  // masters (round to nearest even, as the model's own conversion) and are current. Every
  // other copy is remade at the next forward. Default: weights_changed().
  virtual void weights_updated(const std::vector<size_t>& copies_written) { weights_changed(); }

  // One micro-batch of B sequences of config().seq_len tokens: forward, SUM cross-entropy
  // loss, backward. tokens/targets: B*seq_len host int32. Gradients are added to grads().
  // `ready` (overlapped gradient reduction, model/grad_ready_sink.h), passed on a step's
  // last micro-batch only, may hear each parameter's index once its gradient is final; a
  // model that never calls it stays correct (its reductions start after the backward).
  virtual double forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B,
                                  LayerInputSink* sink = nullptr, RunPosition at = {},
                                  GradReadySink* ready = nullptr) = 0;
  // A step's loss without a host synchronisation per micro-batch: begin_loss_sum(), then
  // forward_backward_summed() per micro-batch (the arguments and gradients of
  // forward_backward), then end_loss_sum() returns the SUM over those micro-batches' tokens.
  // A CUDA model keeps the sum on the device (adding each micro-batch's sum in double) and
  // reads it once, in end_loss_sum(); the default adds forward_backward's return values on
  // the host (the same bits as summing them by hand).
  virtual void begin_loss_sum() { loss_sum_ = 0.0; }
  virtual void forward_backward_summed(const int32_t* tokens, const int32_t* targets, int64_t B,
                                       LayerInputSink* sink = nullptr, RunPosition at = {},
                                       GradReadySink* ready = nullptr) {
    loss_sum_ += forward_backward(tokens, targets, B, sink, at, ready);
  }
  virtual double end_loss_sum() { return loss_sum_; }
  // The summed loss only (validation).
  virtual double forward_loss(const int32_t* tokens, const int32_t* targets, int64_t B, RunPosition at = {}) = 0;
  // The capped logits (B*seq_len, padded_vocab_size) into host memory `out` (tests, debugging).
  virtual void forward_logits(const int32_t* tokens, int64_t B, float* out, RunPosition at = {}) = 0;

  virtual size_t activation_bytes() const = 0;
  virtual size_t parameter_bytes() const = 0;
  virtual size_t weight_copy_bytes() const = 0;

 private:
  double loss_sum_ = 0.0;  // the default loss sum's accumulator
  Tensor view(float* base, const ParamSpec& spec) const { return ParamLayout::view(spec, base, device()); }
};

}  // namespace speedrun::model
