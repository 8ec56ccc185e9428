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
// Device::cuda: parameters, gradients and activations live on the device; token ids are
// copied from the host per call, and params()/grads() are device pointers. Activations are
// stored in the activation dtype (f32, or bf16 on CUDA: docs/cuda.md, "Precision"). With
// bf16 activations every matrix weight is read from a bf16 copy of its f32 master (and the
// embedding table too when model.embedding_dtype is bf16). The copies are made at the
// first forward after the parameters changed: whoever changes params() (the optimizer
// step, a broadcast, a test writing them) must then call weights_changed(), or
// weights_updated() naming the copies an optimizer's update kernels wrote themselves
// (SPEEDRUN_WEIGHT_COPIES=optimizer: model/weight_copies.h). The LM head
// writes f32 logits from bf16 inputs, so the loss and its softmax are f32; every parameter
// gradient is f32 (GEMMs accumulate dW in fp32 over micro-batches). Checked against the
// CPU on an H200 (CudaModel.*, docs/gpu-validation.md); see docs/cuda.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/buffer.h"
#include "core/device_memory.h"
#include "model/grad_ready_sink.h"
#include "model/model.h"
#include "model/param_layout.h"
#include "ops/ops.h"

namespace speedrun::model {

// model.arch track3: the Model implementation of ../shared/specs/model-track3.md.
class Gpt final : public Model {
 public:
  // Allocates parameters, gradients and activations for micro-batches of up to
  // `max_batch_seqs` sequences of cfg.seq_len tokens. `activations` is f32, or bf16 on CUDA
  // (model/precision.h resolves the setting); cfg.embedding_dtype bf16 is CUDA only.
  Gpt(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs, DType activations = DType::f32);
  ~Gpt() override;
  Gpt(const Gpt&) = delete;
  Gpt& operator=(const Gpt&) = delete;

  const config::ModelConfig& config() const override { return cfg_; }
  const ParamLayout& layout() const override { return layout_; }
  Device device() const override { return device_; }
  DType activation_dtype() const override { return act_dtype_; }
  int64_t max_batch_seqs() const override { return max_batch_seqs_; }
  // The logit cap the head applies (model.logit_softcap, logit_cap, sigmoid_temperature).
  const ops::SoftCap& softcap() const { return softcap_; }

  // Flat buffers (layout().total_numel() floats each).
  float* params() override { return params_.as<float>(); }
  float* grads() override { return grads_.as<float>(); }
  // param(), grad(), grads_tensor(): Model's views of the flat buffers.
  using Model::param;
  using Model::grad;

  // Initializes every parameter per the spec from `seed` (bitwise reproducible).
  void init_parameters(uint64_t seed) override;
  void zero_grad() override;
  // The parameters were changed outside the model (optimizer step, broadcast, direct
  // writes): the bf16 weight copies, if any, are remade at the next forward. Free when
  // there are none (f32 activations and embedding, e.g. always on the CPU).
  void weights_changed() override;
  // With SPEEDRUN_WEIGHT_COPIES=optimizer (CUDA, bf16 copies): parameter `index`'s copy, for
  // the optimizers' update kernels to write; else empty.
  Tensor weight_copy(size_t index) override;
  // weights_changed() but for the listed copies (written by the optimizers' kernels). With
  // SPEEDRUN_CHECK_COPIES=1 the next forward checks each of them against its master.
  void weights_updated(const std::vector<size_t>& copies_written) override;

  // One micro-batch of B sequences: forward, SUM cross-entropy loss, backward (`at` is
  // ignored: nothing in Track 3 changes over a run). tokens/targets: B*seq_len host int32
  // (on CUDA copied to the device). Gradients are added to grads(). `ready`, passed on a
  // step's last micro-batch only, hears each parameter's index (layout order) as soon as
  // the backward has finished its gradient.
  double forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, LayerInputSink* sink = nullptr,
                          RunPosition at = {}, GradReadySink* ready = nullptr) override;
  // The step's loss summed on the model's device (Model::begin_loss_sum): on CUDA each
  // micro-batch adds its sum in a kernel (ops::add_sum_of_losses) and the token ids go up
  // through pinned staging (HostUploader), so a micro-batch has no host synchronization;
  // end_loss_sum() reads the sum (one synchronization per step).
  void begin_loss_sum() override;
  void forward_backward_summed(const int32_t* tokens, const int32_t* targets, int64_t B, LayerInputSink* sink = nullptr,
                               RunPosition at = {}, GradReadySink* ready = nullptr) override;
  double end_loss_sum() override;
  // The summed loss only (validation).
  double forward_loss(const int32_t* tokens, const int32_t* targets, int64_t B, RunPosition at = {}) override;
  // The capped logits (B*seq_len, padded_vocab_size) into `out` (tests, debugging).
  void forward_logits(const int32_t* tokens, int64_t B, float* out, RunPosition at = {}) override;

  size_t activation_bytes() const override;
  size_t parameter_bytes() const override { return params_.bytes(); }
  size_t weight_copy_bytes() const override;

  // What the constructor allocates, without allocating (the memory plan): the activation
  // arena for micro-batches of `max_batch_seqs`, and the bf16 weight copies (with the bf16
  // bias copies when the fused GEMM epilogue is selected: cuda::gemm_epilogue()).
  static size_t plan_activation_bytes(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs,
                                      DType activations);
  static size_t plan_weight_copy_bytes(const config::ModelConfig& cfg, Device device, DType activations);
  // Rows of the LM head's logit chunk (the head and the loss run over the micro-batch's
  // B * seq_len rows in chunks of this many: 64 MiB of f32 logits on the CPU, 512 MiB on CUDA).
  static int64_t head_chunk_rows(const config::ModelConfig& cfg, Device device, int64_t batch_seqs);

  // What the activation arena holds, by the kernel choices of kernels/ops/ops_cuda.h (CUDA
  // only; on the CPU both are false and the arena is what it always was):
  //   fused_head       cuda::head_kernel() == fused with bf16 activations: the logit chunk is
  //                    bf16 (chunk_rows x V), its gradient written over it in place; no f32
  //                    chunk, no bf16 dlogits copy.
  //   relu2_recompute  cuda::relu2_storage() == recompute: per layer f only (no g); g lives
  //                    in the dfg scratch during the forward and over f in the backward.
  // Read when a model is built (and by plan_activation_bytes), so both agree.
  struct Storage {
    bool fused_head = false;
    bool relu2_recompute = false;
  };
  static Storage storage_choice(Device device, DType activations);

 private:
  struct Activations;
  struct WeightCopies;
  Tensor view(const Buffer& buf, const ParamSpec& spec) const {
    return ParamLayout::view(spec, static_cast<float*>(buf.data()), device_);
  }
  // Embedding through the final norm; fills the activations for B sequences.
  void forward_trunk(const Tensor& tokens, int64_t B, LayerInputSink* sink);
  // Head + loss over row chunks; with `backward`, also the head's gradients and dhf.
  double head_loss(const Tensor& targets, int64_t B, bool backward);
  // The same without the sum: the per-token losses stay in the activations (device).
  void head_losses(const Tensor& targets, int64_t B, bool backward);
  void backward_trunk(const Tensor& tokens, int64_t B, GradReadySink* ready);
  // The weight a product or the embedding reads: its bf16 copy when there is one, else the
  // f32 master. Parameter gradients always go to grad(index).
  Tensor weight(size_t index) const;
  // The bias a trunk layer's product adds: its bf16 copy when there is one (bf16 activations
  // with SPEEDRUN_GEMM_EPILOGUE=fused when the model was built: cuBLASLt's bias epilogue
  // wants the output's type), else the f32 master.
  Tensor bias(size_t index) const { return weight(index); }
  // Remakes stale bf16 copies (start of every forward); with SPEEDRUN_CHECK_COPIES=1 first
  // checks the copies the optimizers wrote.
  void refresh_weight_copies();
  // Throws std::logic_error naming the first copy in `verify_` that differs from its master's
  // conversion (synchronizes; debug only).
  void verify_optimizer_copies() const;
  // The ids on the model's device: the host array itself on the CPU; on CUDA an
  // asynchronous upload into `device_buffer` through the pinned staging.
  Tensor ids_on_device(const int32_t* ids, int64_t n, const Tensor& device_buffer);
  // Forward and backward of one micro-batch, leaving the per-token losses in the activations.
  void micro_batch(const int32_t* tokens, const int32_t* targets, int64_t B, LayerInputSink* sink,
                   GradReadySink* ready);

  config::ModelConfig cfg_;
  ParamLayout layout_;
  Device device_;
  int64_t max_batch_seqs_;
  ops::SoftCap softcap_;
  Buffer params_, grads_;
  std::unique_ptr<Activations> act_;
  DType act_dtype_;
  std::unique_ptr<WeightCopies> copies_;
  bool lend_copies_ = false;            // SPEEDRUN_WEIGHT_COPIES=optimizer and there are copies
  bool any_stale_ = true;               // some copy needs converting
  std::vector<char> stale_;             // per parameter: its copy needs converting
  std::vector<size_t> verify_;          // copies the optimizers wrote, checked at the next forward
  std::unique_ptr<HostUploader> uploader_;  // CUDA: token and target uploads
  Buffer loss_total_;                   // one f64 on the model's device: the step's loss sum
  bool loss_total_empty_ = true;        // no micro-batch added since begin_loss_sum()
};

}  // namespace speedrun::model
