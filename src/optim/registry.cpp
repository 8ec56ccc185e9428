// The optimizer registry: config type name -> factory. Adding an optimizer is a new
// file, its settings in config/run_config.h, and one line here.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/newton_muon.h"
#include "optim/rmnp.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"

namespace speedrun::optim {

std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& entry, std::vector<ParamRef> params,
                                          const OptimizerContext& context) {
  return std::visit(
      [&](const auto& settings) -> std::unique_ptr<Optimizer> {
        using S = std::decay_t<decltype(settings)>;
        if constexpr (std::is_same_v<S, config::AdamWSettings>) return make_adamw(entry, std::move(params), context);
        else if constexpr (std::is_same_v<S, config::MuonSettings>) return make_muon(entry, std::move(params), context);
        else if constexpr (std::is_same_v<S, config::NewtonMuonSettings>)
          return make_newton_muon(entry, std::move(params), context);
        else if constexpr (std::is_same_v<S, config::RmnpSettings>) return make_rmnp(entry, std::move(params), context);
        else static_assert(sizeof(S) == 0, "optimizer settings type without a factory in optim/registry.cpp");
      },
      entry.settings);
}

std::vector<std::unique_ptr<Optimizer>> build_optimizers(const std::vector<config::OptimizerConfig>& entries,
                                                         model::Model& model, const OptimizerContext& context) {
  const auto groups = assign_parameters(entries, model.layout());
  std::vector<std::unique_ptr<Optimizer>> optimizers;
  for (size_t e = 0; e < entries.size(); ++e) {
    std::vector<ParamRef> refs;
    for (size_t i : groups[e]) {
      const model::ParamSpec& spec = model.layout().params()[i];
      const Tensor p = model.param(i), g = model.grad(i), copy = model.weight_copy(i);
      if (entries[e].type == config::AdamWSettings::type || spec.shape.size() != 3) {
        refs.push_back({spec.name, p, g, i, copy});
        continue;
      }
      // A stack of matrices (record26's qkv_w, (3, H*D, d)): a matrix optimizer updates each
      // as its own matrix, "name[j]" (upstream's Muon orthogonalizes the last two dimensions).
      // Every part keeps the layout index i: the gradient bucketer counts a collective's
      // parameters with repeats, so a round holding several parts waits for i's one report.
      for (int64_t j = 0; j < spec.shape[0]; ++j) {
        auto part = [&](const Tensor& t) { return t.slice_rows(j, j + 1).reshaped({spec.shape[1], spec.shape[2]}); };
        refs.push_back({spec.name + "[" + std::to_string(j) + "]", part(p), part(g), i,
                        copy.empty() ? Tensor{} : part(copy)});
      }
    }
    optimizers.push_back(make_optimizer(entries[e], std::move(refs), context));
  }
  return optimizers;
}

std::vector<size_t> weight_copies_written(const std::vector<std::unique_ptr<Optimizer>>& optimizers) {
  std::vector<size_t> all;
  for (const auto& opt : optimizers) {
    const std::vector<size_t> mine = opt->weight_copies_written();
    all.insert(all.end(), mine.begin(), mine.end());
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return all;
}

}  // namespace speedrun::optim
