// speedrun sample: text from a checkpoint, with the GPT-2 tokenizer (data/tokenizer.h)
// and the KV-cache decoder (model/generate.h), on the CPU.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/checkpoint_model.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/npy.h"
#include "data/tokenizer.h"
#include "data/utf8_stream.h"
#include "model/generate.h"
#include "model/kv_cache.h"

namespace speedrun::cli {

namespace {

struct Options {
  std::string checkpoint, prompt, device = "auto", logits_out;
  int64_t tokens = 256, top_k = 200, threads = 0;
  double temperature = 0.8;
  uint64_t seed = 0;
  bool json = false;
};

std::string text_of(const data::Gpt2Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<uint16_t> u(ids.begin(), ids.end());
  return tok.decode(u);
}

void run_sample(const Options& o) {
  if (o.device == "cuda")
    throw UserError("speedrun sample runs on the CPU (its KV-cache attention has no CUDA kernel); use --device cpu");
  const data::Gpt2Tokenizer tok = data::Gpt2Tokenizer::load_default();
  CheckpointModel cm = open_checkpoint(o.checkpoint);
  // The KV-cache decoder is Track 3's forward (model::Gpt): other architectures are refused.
  if (cm.config.model.arch != "track3")
    throw UserError(cm.path.string() + ": model.arch = " + cm.config.model.arch +
                    "; sample supports model.arch track3 only (speedrun eval takes any architecture)");
  build_model(cm, Device::cpu, 1);
  model::Gpt& gpt = dynamic_cast<model::Gpt&>(*cm.model);
  // Threads: --threads, else by the work of one token. A decoding step is small (about one
  // multiply-add per parameter outside the embedding): below some 32M of them (the
  // quickstart model: 7M) threads cost more than they give, and on a busy machine
  // OpenMP's spinning workers take the CPU from the one doing the work (measured: 2
  // threads 5x slower than 1 for the quickstart model on a loaded 2-core machine).
  const int64_t per_token = cm.model->layout().total_numel() - cm.model->layout().find("embed.weight").numel;
  set_cpu_threads(o.threads > 0 ? o.threads : std::min<int64_t>(omp_get_num_procs(), 1 + per_token / (32 << 20)), 0);
  const config::ModelConfig& m = cm.config.model;

  // The prompt's ids; an empty prompt starts from <|endoftext|>, as GPT-2's unconditional samples do.
  std::vector<int32_t> prompt;
  for (uint16_t id : tok.encode(o.prompt)) prompt.push_back(id);
  if (prompt.empty()) {
    if (!tok.end_of_text()) throw UserError("--prompt is empty and the tokenizer has no <|endoftext|> token to start from");
    prompt.push_back(*tok.end_of_text());
  }
  for (int32_t id : prompt)
    if (id >= m.vocab_size)
      throw UserError("--prompt: its token " + std::to_string(id) + " ('" + tok.token_bytes(static_cast<uint16_t>(id)) +
                      "') is not below model.vocab_size = " + std::to_string(m.vocab_size) + " of " +
                      cm.path.string());

  // --logits-out keeps every step's logits in memory until the end: bound it.
  const double logits_bytes = 4.0 * static_cast<double>(o.tokens) * static_cast<double>(m.padded_vocab_size);
  if (!o.logits_out.empty() && logits_bytes > double(1ull << 32))
    throw UserError("--logits-out with --tokens " + std::to_string(o.tokens) + " would hold " +
                    std::to_string(static_cast<long long>(logits_bytes / (1 << 20))) +
                    " MiB of logits (more than 4 GiB); generate fewer tokens");
  model::SamplingOptions so;
  so.tokens = o.tokens;
  so.temperature = o.temperature;
  so.top_k = o.top_k;
  so.seed = o.seed;
  so.vocab_limit = std::min<int64_t>(m.vocab_size, static_cast<int64_t>(tok.vocab_size()));
  model::KvDecoder decoder(gpt);
  spdlog::info("sampling {} tokens from {} (step {}): temperature {}, top-k {}, seed {}, context {} tokens", o.tokens,
               cm.path.string(), cm.step, o.temperature, o.top_k, o.seed, m.seq_len);

  // Plain output streams the text as it is drawn: the prompt, then each token's bytes,
  // as valid UTF-8 (a character split over tokens is printed when complete; bytes that
  // are not UTF-8 become U+FFFD, as tiktoken's decode does: data/utf8_stream.h).
  data::Utf8Stream text;
  auto print_text = [](const std::string& s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  };
  auto print_token = [&](int32_t id) { print_text(text.push(tok.token_bytes(static_cast<uint16_t>(id)))); };
  if (!o.json) {
    std::fputs(o.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  const model::Generation g =
      model::generate(decoder, prompt, so, !o.logits_out.empty(), o.json ? std::function<void(int32_t)>() : print_token);
  if (!o.json) print_text(text.finish());
  const double tokens_per_s = g.seconds > 0 ? static_cast<double>(g.tokens.size()) / g.seconds : 0.0;
  if (!o.logits_out.empty())
    write_npy(o.logits_out, Tensor::of(g.logits.data(), {static_cast<int64_t>(g.tokens.size()), m.padded_vocab_size}));
  if (o.json) {
    nlohmann::json j = {{"checkpoint", cm.path.string()},
                        {"step", cm.step},
                        {"prompt", o.prompt},
                        {"prompt_tokens", prompt},
                        {"tokens", g.tokens},
                        {"text", text_of(tok, g.tokens)},
                        {"temperature", o.temperature},
                        {"top_k", o.top_k},
                        {"seed", o.seed},
                        {"context_reads", g.prefills},
                        {"threads", omp_get_max_threads()},
                        {"seconds", g.seconds},
                        {"tokens_per_s", tokens_per_s}};
    // Generated bytes need not be valid UTF-8 (a character split by the last token): replaced, not refused.
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
  }
  spdlog::info("{} tokens in {:.3f} s: {:.0f} tokens/s (prompt {} tokens, {} context read(s), {} thread(s))",
               g.tokens.size(), g.seconds, tokens_per_s, prompt.size(), g.prefills, omp_get_max_threads());
}

}  // namespace

Command add_sample_command(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("sample", "generate text from a checkpoint (a .safetensors file or a run directory)");
  sub->add_option("checkpoint", o->checkpoint, "checkpoint file, or a run directory (its newest checkpoint)")->required();
  sub->add_option("--prompt", o->prompt, "text to continue (empty: start from <|endoftext|>)")->required();
  sub->add_option("--tokens", o->tokens, "tokens to generate")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  sub->add_option("--temperature", o->temperature, "softmax temperature; 0 = greedy (the most likely token)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  sub->add_option("--top-k", o->top_k, "draw from the k most likely tokens only (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 31));
  sub->add_option("--seed", o->seed, "seed of the draws: the same seed gives the same text")
      ->capture_default_str();
  sub->add_option("--device", o->device, "auto or cpu (cuda is refused: the decoder runs on the CPU)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_option("--threads", o->threads, "CPU threads (default: one per 32M multiply-adds of a token, up to all cores)")
      ->check(CLI::Range(0, 4096));
  sub->add_flag("--json", o->json, "print one JSON object (prompt and generated ids, text, speed) instead of the text");
  sub->add_option("--logits-out", o->logits_out,
                  "write the logits each token was drawn from to this .npy file, (tokens, padded_vocab_size) f32");
  return {sub, [o] { run_sample(*o); }};
}

}  // namespace speedrun::cli
