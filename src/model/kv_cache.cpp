#include "model/kv_cache.h"

#include <stdexcept>
#include <string>

#include "core/error.h"
#include "ops/ops.h"

namespace speedrun::model {

KvDecoder::KvDecoder(Gpt& model) : model_(model) {
  if (model.device() != Device::cpu)
    throw UserError(std::string("the KV-cache decoder runs on the CPU; the model is on ") + device_name(model.device()));
  const config::ModelConfig& m = model.config();
  capacity_ = m.seq_len;
  const auto T = static_cast<size_t>(capacity_), d = static_cast<size_t>(m.d_model),
             hd = static_cast<size_t>(m.attn_dim()), f = static_cast<size_t>(m.mlp_hidden()),
             L = static_cast<size_t>(m.n_layer), H = static_cast<size_t>(m.n_head);
  k_cache_.assign(L * T * hd, 0.0f);
  v_cache_.assign(L * T * hd, 0.0f);
  cos_.assign(T * static_cast<size_t>(m.head_dim / 2), 0.0f);
  sin_.assign(cos_.size(), 0.0f);
  ops::rotary_tables(Tensor::of(cos_.data(), {capacity_, m.head_dim / 2}),
                     Tensor::of(sin_.data(), {capacity_, m.head_dim / 2}), m.head_dim, m.rotary_base);
  for (auto* buf : {&x_, &h_, &tmp_}) buf->assign(T * d, 0.0f);
  for (auto* buf : {&q_, &k_, &qr_, &y_}) buf->assign(T * hd, 0.0f);
  f_.assign(T * f, 0.0f);
  rstd_.assign(T, 0.0f);
  qk_rstd_.assign(T * H, 0.0f);
}

void KvDecoder::append(std::span<const int32_t> tokens, float* logits, bool all_positions) {
  const config::ModelConfig& m = model_.config();
  const auto n = static_cast<int64_t>(tokens.size());
  if (n < 1 || length_ + n > capacity_)
    throw std::invalid_argument("KvDecoder::append: " + std::to_string(n) + " token(s) after " +
                                std::to_string(length_) + " exceed the context of " + std::to_string(capacity_));
  const int64_t p0 = length_, S = p0 + n, d = m.d_model, hd = m.attn_dim(), H = m.n_head, D = m.head_dim;
  const int64_t f = m.mlp_hidden(), V = m.padded_vocab_size;
  const double eps = m.rmsnorm_eps;
  auto rows = [n](std::vector<float>& buf, int64_t cols) { return Tensor::of(buf.data(), {n, cols}); };
  auto heads = [n, H, D](const Tensor& t) { return t.reshaped({1, n, H, D}); };
  const Tensor x = rows(x_, d), h = rows(h_, d), tmp = rows(tmp_, d), q = rows(q_, hd), k = rows(k_, hd),
               qr = rows(qr_, hd), fg = rows(f_, f), rstd = Tensor::of(rstd_.data(), {n}),
               qk_rstd = Tensor::of(qk_rstd_.data(), {n * H});
  const Tensor y = rows(y_, hd);  // the attention output (v goes straight into the cache)
  const Tensor cos = Tensor::of(cos_.data(), {capacity_, D / 2}).slice_rows(p0, S),
               sin = Tensor::of(sin_.data(), {capacity_, D / 2}).slice_rows(p0, S);

  ops::embedding_forward(tmp, Tensor::of(tokens.data(), {n}), model_.param("embed.weight"));
  ops::rmsnorm_forward(x, rstd, tmp, model_.param("norm1.gains"), eps);
  for (int64_t l = 0; l < m.n_layer; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    auto P = [&](const char* name) { return model_.param(b + name); };
    const Tensor k_all = Tensor::of(k_cache_.data() + l * capacity_ * hd, {capacity_, hd});
    const Tensor v_all = Tensor::of(v_cache_.data() + l * capacity_ * hd, {capacity_, hd});
    const Tensor k_new = k_all.slice_rows(p0, S), v_new = v_all.slice_rows(p0, S);

    ops::rmsnorm_forward(h, rstd, x, P("norm1.gains"), eps);
    ops::linear_forward(q, h, P("attn.q.weight"), P("attn.q.bias"));
    ops::linear_forward(k, h, P("attn.k.weight"), P("attn.k.bias"));
    ops::linear_forward(v_new, h, P("attn.v.weight"), P("attn.v.bias"));
    ops::qk_norm_forward(qr, qk_rstd, q, D, eps);
    ops::qk_norm_forward(k_new, qk_rstd, k, D, eps);
    // Rotary at the tokens' own positions p0..S-1: the table rows from p0 on.
    ops::rotary_forward(heads(qr), heads(qr), cos, sin);
    ops::rotary_forward(heads(k_new), heads(k_new), cos, sin);
    ops::attention_decode(heads(y), heads(qr), k_all.slice_rows(0, S).reshaped({1, S, H, D}),
                          v_all.slice_rows(0, S).reshaped({1, S, H, D}), m.attn_scale);
    ops::linear_forward(tmp, y, P("attn.proj.weight"), P("attn.proj.bias"));
    ops::residual_forward(x, x, tmp);
    ops::rmsnorm_forward(h, rstd, x, P("norm2.gains"), eps);
    ops::linear_forward(fg, h, P("mlp.fc.weight"), P("mlp.fc.bias"));
    ops::relu2_forward(fg, fg);
    ops::linear_forward(tmp, fg, P("mlp.proj.weight"), P("mlp.proj.bias"));
    ops::residual_forward(x, x, tmp);
  }
  ops::rmsnorm_forward(h, rstd, x, model_.param("norm2.gains"), eps);
  const Tensor hf = all_positions ? h : h.slice_rows(n - 1, n);
  const Tensor z = Tensor::of(logits, {hf.rows(), V});
  ops::linear_forward(z, hf, model_.param("proj.weight"), model_.param("proj.bias"));
  ops::softcap_forward(z, z, model_.softcap());
  length_ = S;
}

}  // namespace speedrun::model
