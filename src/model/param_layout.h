// The parameters of a model: names, shapes and initialization, laid out in one flat
// buffer (llm.c's ParameterTensors idea). Each architecture lists its own (model/registry.h). Gradients and optimizer state use
// the same layout, so a parameter is found by the same offset in each buffer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/tensor.h"

namespace speedrun::model {

// How a parameter starts (../shared/specs/model-track3.md, "Parameters"). The model's
// `init` setting picks the rule for Linear parameters not named *proj*:
//   track3:        weights normal_fan_in, biases zeros (the spec);
//   torch_default: weights and biases uniform_fan_in (torch.nn.Linear's default, kept
//                  by the Adam baseline #2).
// Under both, everything named *proj* is zero, the embedding normal, the gains ones.
enum class Init {
  zeros,           // parameters whose name contains "proj"; track3's other biases
  ones,            // RMSNorm gains
  normal,          // N(0, 1): the embedding
  normal_fan_in,   // N(0, 0.33 / fan_in): track3's other weights
  uniform_fan_in,  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch_default's other weights and biases
  uniform_std,     // uniform with standard deviation ParamSpec::std (bound sqrt(3) std): record26's matrices
  values,          // ParamSpec::values, element by element: record26's scalars
};

struct ParamSpec {
  std::string name;              // as PyTorch names it upstream, e.g. "blocks.3.attn.q.weight"
  std::vector<int64_t> shape;    // (out, in) for weights
  Init init = Init::zeros;
  int64_t fan_in = 0;            // in-features of the Linear layer it belongs to (0: not a Linear)
  double std = 0.0;              // Init::uniform_std only
  std::vector<float> values;     // Init::values only: numel values
  int64_t numel = 0;
  int64_t offset = 0;            // in elements, into the flat buffer
  bool is_matrix() const { return shape.size() == 2; }
  // A matrix, or a stack of equal matrices (record26's qkv_w (3, hd, d)): what matrix
  // optimizers take, one matrix at a time.
  bool is_matrix_stack() const { return shape.size() >= 2; }
};

class ParamLayout {
 public:
  ParamLayout() = default;
  // The layout of m.arch's model (model/registry.h).
  explicit ParamLayout(const config::ModelConfig& m);

  const std::vector<ParamSpec>& params() const { return params_; }
  int64_t total_numel() const { return total_; }
  // Throws std::out_of_range naming the parameter when it does not exist.
  const ParamSpec& find(const std::string& name) const;
  size_t index_of(const std::string& name) const;

  // The view of parameter `spec` inside a flat f32 buffer that starts at `base`.
  static Tensor view(const ParamSpec& spec, float* base, Device device);

  // Appends a parameter (the architectures' layout functions build with it). Returns it, so
  // that the caller can set std or values.
  ParamSpec& add(std::string name, std::vector<int64_t> shape, Init init, int64_t fan_in = 0);

 private:
  std::vector<ParamSpec> params_;
  int64_t total_ = 0;
};

// The Track 3 GPT's parameters (../shared/specs/model-track3.md, "Parameters").
ParamLayout track3_layout(const config::ModelConfig& m);

// Fills a flat f32 parameter buffer per each parameter's Init from `seed`.
// Counter-based: every element's value depends only on (seed, parameter index,
// element index), so the result is bitwise identical on any machine and thread count.
void initialize_parameters(const ParamLayout& layout, uint64_t seed, float* params);

}  // namespace speedrun::model
