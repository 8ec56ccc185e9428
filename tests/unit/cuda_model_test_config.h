// The small Track 3 model the CUDA model tests compare against the CPU (test_cuda_model.cpp,
// test_cuda_model_step.cpp), and the random parameters they start from.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "config/run_config.h"
#include "model/param_layout.h"

namespace speedrun::test {

inline config::ModelConfig cuda_test_model_config() {
  config::ModelConfig m;
  m.vocab_size = 300;
  m.padded_vocab_size = 320;
  m.n_layer = 2;
  m.d_model = 128;
  m.n_head = 2;
  m.head_dim = 64;
  m.seq_len = 80;  // more than one 64-row attention tile, not a multiple of it
  return m;
}

// Random parameters everywhere (the spec's init zeroes the head, which would zero every trunk
// gradient): gains near 1, everything else small. `params`: the layout's f32 host array.
inline void fill_random_parameters(const model::ParamLayout& layout, float* params, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> small(-0.2f, 0.2f), near_one(0.8f, 1.2f);
  for (const auto& spec : layout.params()) {
    const bool gains = spec.name.find("gains") != std::string::npos;
    for (int64_t i = 0; i < spec.numel; ++i) params[spec.offset + i] = gains ? near_one(rng) : small(rng);
  }
}

}  // namespace speedrun::test
