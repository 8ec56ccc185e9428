#include "optim/param_groups.h"

#include <algorithm>

#include "core/error.h"
#include "optim/newton_muon.h"

namespace speedrun::optim {

bool name_matches(const std::string& pattern, const std::string& name) {
  // Iterative glob matching with single-star backtracking.
  size_t p = 0, n = 0, star = std::string::npos, star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p, ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_n = n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++star_n;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::vector<std::vector<size_t>> assign_parameters(const std::vector<config::OptimizerConfig>& entries,
                                                   const model::ParamLayout& layout) {
  const auto& params = layout.params();
  std::vector<std::vector<size_t>> groups(entries.size());
  std::vector<int> owner(params.size(), -1);
  for (size_t e = 0; e < entries.size(); ++e) {
    const std::string where = "optimizers[" + std::to_string(e) + "]";
    for (size_t k = 0; k < entries[e].params.size(); ++k) {
      const std::string& pattern = entries[e].params[k];
      bool any = false;
      for (size_t i = 0; i < params.size(); ++i) {
        if (!name_matches(pattern, params[i].name)) continue;
        any = true;
        if (owner[i] == static_cast<int>(e)) continue;  // two patterns of one entry may overlap
        if (owner[i] >= 0)
          throw UserError("parameter '" + params[i].name + "' is matched by both optimizers[" +
                          std::to_string(owner[i]) + "] and " + where + " (pattern '" + pattern +
                          "'); each parameter must belong to exactly one optimizer entry");
        owner[i] = static_cast<int>(e);
        groups[e].push_back(i);
      }
      if (!any)
        throw UserError(where + ".params[" + std::to_string(k) + "]: pattern '" + pattern +
                        "' matches no parameter (names look like 'blocks.0.attn.q.weight', 'embed.weight', "
                        "'proj.weight', 'norm1.gains')");
    }
    // Matrix optimizers orthogonalize/normalize 2-D weights only.
    if (entries[e].type != config::AdamWSettings::type) {
      for (size_t i : groups[e])
        if (!params[i].is_matrix_stack())
          throw UserError(where + " (" + entries[e].type + ") matches '" + params[i].name +
                          "', which is not a matrix; give 1-D parameters to an adamw entry");
    }
    // Newton-Muon needs each matrix's layer input.
    if (entries[e].type == config::NewtonMuonSettings::type) {
      for (size_t i : groups[e]) {
        int64_t layer = 0;
        model::CapturePoint point{};
        if (!capture_point_of(params[i].name, layer, point))
          throw UserError(where + " (newton_muon) matches '" + params[i].name +
                          "', whose input is not captured; Newton-Muon preconditions only "
                          "blocks.*.attn.{q,k,v,proj}.weight and blocks.*.mlp.{fc,proj}.weight (record26: "
                          "blocks.*.attn.{qkv_w,c_proj.weight}, blocks.*.mlp.{c_fc,c_proj}.weight): give it to "
                          "muon or adamw");
      }
    }
  }
  for (size_t i = 0; i < params.size(); ++i)
    if (owner[i] < 0)
      throw UserError("parameter '" + params[i].name +
                      "' is matched by no optimizer entry; every parameter needs exactly one (add a pattern to "
                      "an entry's params)");
  for (auto& g : groups) std::sort(g.begin(), g.end());
  return groups;
}

}  // namespace speedrun::optim
