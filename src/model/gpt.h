// The Track 3 GPT (../shared/specs/model-track3.md), forward and backward written out
// against the ops layer: no autograd, every saved activation explicit.
//
//   x = rmsnorm(embed[tokens]) * norm1.gains
//   per block: x += attn.proj(attention(rotary(qknorm(q)), rotary(qknorm(k)), v)) of rmsnorm(x)*g1
//              x += mlp.proj(relu(mlp.fc(rmsnorm(x)*g2))^2)
//   loss = sum CE(softcap(proj(rmsnorm(x) * norm2.gains)), targets)
//
// Parameters and gradients live in flat f32 buffers with named views (ParamLayout).
// Gradients accumulate over micro-batches until zero_grad().
//
// Device::cuda: parameters, gradients and activations live on the device (all f32 for
// now: the bf16 activation path of the ops layer is not used by the model yet); token ids
// are copied from the host per call, and params()/grads() are device pointers. Never run
// on a GPU so far: see docs/cuda.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/buffer.h"
#include "model/param_layout.h"
#include "ops/ops.h"

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
  // input: (tokens, in_features) f32, valid only during the call.
  virtual void capture(int64_t layer, CapturePoint point, const Tensor& input) = 0;
};

class Gpt {
 public:
  // Allocates parameters, gradients and activations for micro-batches of up to
  // `max_batch_seqs` sequences of cfg.seq_len tokens.
  Gpt(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs);
  ~Gpt();
  Gpt(const Gpt&) = delete;
  Gpt& operator=(const Gpt&) = delete;

  const config::ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  Device device() const { return device_; }
  int64_t max_batch_seqs() const { return max_batch_seqs_; }

  // Flat buffers (layout().total_numel() floats each).
  float* params() { return params_.as<float>(); }
  float* grads() { return grads_.as<float>(); }
  Tensor param(const std::string& name) { return view(params_, layout_.find(name)); }
  Tensor grad(const std::string& name) { return view(grads_, layout_.find(name)); }
  Tensor param(size_t index) { return view(params_, layout_.params()[index]); }
  // The whole flat gradient buffer as one tensor (for all-reduce).
  Tensor grads_tensor() { return Tensor(grads_.data(), DType::f32, device_, {layout_.total_numel()}); }
  Tensor grad(size_t index) { return view(grads_, layout_.params()[index]); }

  // Initializes every parameter per the spec from `seed` (bitwise reproducible).
  void init_parameters(uint64_t seed);
  void zero_grad();

  // One micro-batch of B sequences: forward, SUM cross-entropy loss, backward.
  // tokens/targets: B*seq_len host int32 (on CUDA copied to the device). Gradients are
  // added to grads().
  double forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, LayerInputSink* sink = nullptr);
  // The summed loss only (validation).
  double forward_loss(const int32_t* tokens, const int32_t* targets, int64_t B);
  // The capped logits (B*seq_len, padded_vocab_size) into `out` (tests, debugging).
  void forward_logits(const int32_t* tokens, int64_t B, float* out);

  size_t activation_bytes() const;
  size_t parameter_bytes() const { return params_.bytes(); }

 private:
  struct Activations;
  Tensor view(const Buffer& buf, const ParamSpec& spec) const {
    return ParamLayout::view(spec, static_cast<float*>(buf.data()), device_);
  }
  // Embedding through the final norm; fills the activations for B sequences.
  void forward_trunk(const Tensor& tokens, int64_t B, LayerInputSink* sink);
  // Head + loss over row chunks; with `backward`, also the head's gradients and dhf.
  double head_loss(const Tensor& targets, int64_t B, bool backward);
  void backward_trunk(const Tensor& tokens, int64_t B);

  config::ModelConfig cfg_;
  ParamLayout layout_;
  Device device_;
  int64_t max_batch_seqs_;
  ops::SoftCap softcap_;
  Buffer params_, grads_;
  std::unique_ptr<Activations> act_;
};

}  // namespace speedrun::model
