// The optimizer registry: config type name -> factory. Adding an optimizer is a new
// file, its settings in config/run_config.h, and one line here.
#include <stdexcept>

#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/optimizer.h"

namespace speedrun::optim {

std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& entry, std::vector<ParamRef> params) {
  return std::visit(
      [&](const auto& settings) -> std::unique_ptr<Optimizer> {
        using S = std::decay_t<decltype(settings)>;
        if constexpr (std::is_same_v<S, config::AdamWSettings>) return make_adamw(entry, std::move(params));
        else if constexpr (std::is_same_v<S, config::MuonSettings>) return make_muon(entry, std::move(params));
        else static_assert(sizeof(S) == 0, "optimizer settings type without a factory in optim/registry.cpp");
      },
      entry.settings);
}

}  // namespace speedrun::optim
