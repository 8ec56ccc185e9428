#include "model/registry.h"

#include <stdexcept>

#include "model/gpt.h"
#include "model/record26.h"

namespace speedrun::model {

const char* capture_point_name(CapturePoint p) {
  switch (p) {
    case CapturePoint::attn_qkv: return "attn.qkv";
    case CapturePoint::attn_proj: return "attn.proj";
    case CapturePoint::mlp_fc: return "mlp.fc";
    case CapturePoint::mlp_proj: return "mlp.proj";
  }
  return "?";
}

namespace {
bool is_record26(const config::ModelConfig& cfg) {
  if (cfg.arch == "record26") return true;
  if (cfg.arch == "track3") return false;
  throw std::invalid_argument("model.arch '" + cfg.arch + "' has no model class (model/registry.cpp)");
}
}  // namespace

void check_arch_supported(const config::ModelConfig& cfg, Device device) {
  // Both architectures run on both devices (record26 on CUDA, FP8 head included: its masked
  // attention kernels and FP8 head have not yet run on a GPU; docs/design.md). An unknown arch
  // is refused by is_record26; the shapes a device cannot take by check_model_runs_on.
  (void)device;
  (void)is_record26(cfg);
}

std::unique_ptr<Model> make_model(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs,
                                  DType activations) {
  check_arch_supported(cfg, device);
  if (is_record26(cfg)) return std::make_unique<Record26>(cfg, device, max_batch_seqs, activations);
  return std::make_unique<Gpt>(cfg, device, max_batch_seqs, activations);
}

double gradient_scale(const config::ModelConfig& cfg, int64_t batch_tokens) {
  if (batch_tokens < cfg.seq_len || batch_tokens % cfg.seq_len != 0)
    throw std::invalid_argument("gradient_scale: batch_tokens must be a multiple of seq_len");
  return is_record26(cfg) ? static_cast<double>(cfg.seq_len) / static_cast<double>(batch_tokens) : 1.0;
}

ParamLayout layout_for(const config::ModelConfig& cfg) {
  return is_record26(cfg) ? record26_layout(cfg) : track3_layout(cfg);
}

size_t plan_activation_bytes(const config::ModelConfig& cfg, Device device, int64_t max_batch_seqs,
                             DType activations) {
  check_arch_supported(cfg, device);
  return is_record26(cfg) ? Record26::plan_activation_bytes(cfg, device, max_batch_seqs, activations)
                          : Gpt::plan_activation_bytes(cfg, device, max_batch_seqs, activations);
}

size_t plan_weight_copy_bytes(const config::ModelConfig& cfg, Device device, DType activations) {
  check_arch_supported(cfg, device);
  return is_record26(cfg) ? Record26::plan_weight_copy_bytes(cfg, device, activations)
                          : Gpt::plan_weight_copy_bytes(cfg, device, activations);
}

}  // namespace speedrun::model
