// Assigns parameters to optimizer entries by the entries' name patterns. Every
// parameter must be matched by exactly one entry, and every pattern must match at
// least one parameter (a pattern that matches nothing is almost always a typo).
#pragma once

#include <string>
#include <vector>

#include "config/run_config.h"
#include "model/param_layout.h"

namespace speedrun::optim {

// `*` matches any run of characters (dots included), `?` one character; the whole
// name must match.
bool name_matches(const std::string& pattern, const std::string& name);

// For each optimizer entry, the indices (into layout.params()) of its parameters.
// Throws UserError naming the parameter, entry or pattern at fault.
std::vector<std::vector<size_t>> assign_parameters(const std::vector<config::OptimizerConfig>& entries,
                                                   const model::ParamLayout& layout);

}  // namespace speedrun::optim
