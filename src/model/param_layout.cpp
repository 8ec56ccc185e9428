#include "model/param_layout.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

#include "model/registry.h"

namespace speedrun::model {

static int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

ParamSpec& ParamLayout::add(std::string name, std::vector<int64_t> shape, Init init, int64_t fan_in) {
  ParamSpec p;
  p.fan_in = fan_in;
  p.numel = product(shape);
  p.offset = total_;
  p.name = std::move(name);
  p.shape = std::move(shape);
  p.init = init;
  // Keep every view 16-float (64-byte) aligned for vector loads.
  total_ += (p.numel + 15) / 16 * 16;
  params_.push_back(std::move(p));
  return params_.back();
}

ParamLayout::ParamLayout(const config::ModelConfig& m) : ParamLayout(layout_for(m)) {}

// A Linear layer `name` (out, in) of Track 3: its weight and bias, initialized per `init_rule`.
static void add_track3_linear(ParamLayout& layout, const std::string& name, int64_t out, int64_t in,
                       const std::string& init_rule) {
  // Upstream zeroes every parameter whose name contains "proj" (attn.proj, mlp.proj and
  // the head, which is named "proj") under both rules.
  const bool proj = name.find("proj") != std::string::npos;
  Init weight = Init::zeros, bias = Init::zeros;
  if (!proj && init_rule == "torch_default") {
    weight = bias = Init::uniform_fan_in;
  } else if (!proj) {
    weight = Init::normal_fan_in;
  }
  layout.add(name + ".weight", {out, in}, weight, in);
  layout.add(name + ".bias", {out}, bias, in);
}

ParamLayout track3_layout(const config::ModelConfig& m) {
  ParamLayout layout;
  auto add = [&layout](std::string name, std::vector<int64_t> shape, Init init) {
    layout.add(std::move(name), std::move(shape), init);
  };
  auto add_linear = [&layout](const std::string& name, int64_t out, int64_t in, const std::string& rule) {
    add_track3_linear(layout, name, out, in, rule);
  };
  const int64_t d = m.d_model, hd = m.attn_dim(), f = m.mlp_hidden(), v = m.padded_vocab_size;
  if (m.init != "track3" && m.init != "torch_default")
    throw std::invalid_argument("model.init '" + m.init + "' is neither track3 nor torch_default");
  add("embed.weight", {v, d}, Init::normal);
  for (int64_t l = 0; l < m.n_layer; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    for (const char* qkv : {"q", "k", "v"}) add_linear(b + "attn." + qkv, hd, d, m.init);
    add_linear(b + "attn.proj", d, hd, m.init);
    add_linear(b + "mlp.fc", f, d, m.init);
    add_linear(b + "mlp.proj", d, f, m.init);
    add(b + "norm1.gains", {d}, Init::ones);
    add(b + "norm2.gains", {d}, Init::ones);
  }
  add_linear("proj", v, d, m.init);
  add("norm1.gains", {d}, Init::ones);
  add("norm2.gains", {d}, Init::ones);
  return layout;
}

const ParamSpec& ParamLayout::find(const std::string& name) const { return params_[index_of(name)]; }

size_t ParamLayout::index_of(const std::string& name) const {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].name == name) return i;
  throw std::out_of_range("no parameter named '" + name + "'");
}

Tensor ParamLayout::view(const ParamSpec& spec, float* base, Device device) {
  Tensor t;
  t.ptr = base + spec.offset;
  t.dtype = DType::f32;
  t.device = device;
  t.ndim = static_cast<int>(spec.shape.size());
  for (int i = 0; i < t.ndim; ++i) t.dims[i] = spec.shape[i];
  return t;
}

namespace {

// splitmix64: a strong 64-bit mixer; used as a counter-based generator.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in (0, 1] from the top 53 bits.
double unit_open_closed(uint64_t bits) { return (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53; }

// The key of parameter `p`'s stream of counter draws.
uint64_t param_key(uint64_t seed, uint64_t p) { return mix64(seed ^ mix64(p + 0x632BE59BD9B4E019ull)); }

// A standard normal for element `i` of parameter `p`: Box-Muller on two counter draws.
double standard_normal(uint64_t seed, uint64_t p, uint64_t i) {
  const uint64_t key = param_key(seed, p);
  const uint64_t pair = i >> 1;
  const double u1 = unit_open_closed(mix64(key ^ (2 * pair)));
  const double u2 = unit_open_closed(mix64(key ^ (2 * pair + 1)));
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double angle = 2.0 * std::numbers::pi * u2;
  return (i & 1) ? r * std::sin(angle) : r * std::cos(angle);
}

// Uniform in (-1, 1] for element `i` of parameter `p`: one counter draw.
double symmetric_uniform(uint64_t seed, uint64_t p, uint64_t i) {
  return 2.0 * unit_open_closed(mix64(param_key(seed, p) ^ i)) - 1.0;
}

}  // namespace

void initialize_parameters(const ParamLayout& layout, uint64_t seed, float* params) {
  const auto& specs = layout.params();
  for (size_t p = 0; p < specs.size(); ++p) {
    const ParamSpec& s = specs[p];
    float* out = params + s.offset;
    switch (s.init) {
      case Init::zeros:
        std::fill(out, out + s.numel, 0.0f);
        break;
      case Init::ones:
        std::fill(out, out + s.numel, 1.0f);
        break;
      case Init::normal:
      case Init::normal_fan_in: {
        const double std = s.init == Init::normal ? 1.0 : std::sqrt(0.33 / static_cast<double>(s.fan_in));
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < s.numel; ++i)
          out[i] = static_cast<float>(std * standard_normal(seed, p, static_cast<uint64_t>(i)));
        break;
      }
      case Init::values:
        if (static_cast<int64_t>(s.values.size()) != s.numel)
          throw std::logic_error("parameter " + s.name + ": Init::values with " + std::to_string(s.values.size()) +
                                 " values for " + std::to_string(s.numel) + " elements");
        std::copy(s.values.begin(), s.values.end(), out);
        break;
      case Init::uniform_std: {
        const double bound = std::sqrt(3.0) * s.std;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < s.numel; ++i)
          out[i] = static_cast<float>(bound * symmetric_uniform(seed, p, static_cast<uint64_t>(i)));
        break;
      }
      case Init::uniform_fan_in: {
        // u in (-1, 1], so values lie in (-bound, bound]; rounding to f32 is monotone and
        // keeps them within f32(bound).
        const double bound = 1.0 / std::sqrt(static_cast<double>(s.fan_in));
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < s.numel; ++i)
          out[i] = static_cast<float>(bound * symmetric_uniform(seed, p, static_cast<uint64_t>(i)));
        break;
      }
    }
  }
}

}  // namespace speedrun::model
