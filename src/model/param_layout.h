// The parameters of the Track 3 GPT: names, shapes and initialization, laid out in
// one flat buffer (llm.c's ParameterTensors idea). Gradients and optimizer state use
// the same layout, so a parameter is found by the same offset in each buffer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/tensor.h"

namespace speedrun::model {

enum class Init {
  zeros,          // biases, and weights whose name contains "proj"
  ones,           // RMSNorm gains
  normal,         // N(0, 1): the embedding
  normal_fan_in,  // N(0, 0.33 / fan_in): every other weight
};

struct ParamSpec {
  std::string name;              // as PyTorch names it upstream, e.g. "blocks.3.attn.q.weight"
  std::vector<int64_t> shape;    // (out, in) for weights
  Init init = Init::zeros;
  int64_t numel = 0;
  int64_t offset = 0;            // in elements, into the flat buffer
  bool is_matrix() const { return shape.size() == 2; }
};

class ParamLayout {
 public:
  explicit ParamLayout(const config::ModelConfig& m);

  const std::vector<ParamSpec>& params() const { return params_; }
  int64_t total_numel() const { return total_; }
  // Throws std::out_of_range naming the parameter when it does not exist.
  const ParamSpec& find(const std::string& name) const;
  size_t index_of(const std::string& name) const;

  // The view of parameter `spec` inside a flat f32 buffer that starts at `base`.
  static Tensor view(const ParamSpec& spec, float* base, Device device);

 private:
  void add(std::string name, std::vector<int64_t> shape, Init init);
  std::vector<ParamSpec> params_;
  int64_t total_ = 0;
};

// Fills a flat f32 parameter buffer per the spec's initialization from `seed`.
// Counter-based: every element's value depends only on (seed, parameter index,
// element index), so the result is bitwise identical on any machine and thread count.
void initialize_parameters(const ParamLayout& layout, uint64_t seed, float* params);

}  // namespace speedrun::model
