#include "dist/fault_injection.h"

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace speedrun::dist {

void maybe_fail_for_test(int rank, int64_t step) {
  static const char* fail_rank = std::getenv("SPEEDRUN_TEST_FAIL_RANK");
  if (fail_rank == nullptr || std::atoi(fail_rank) != rank) return;
  static const char* fail_step = std::getenv("SPEEDRUN_TEST_FAIL_STEP");
  if (step != (fail_step != nullptr ? std::atoll(fail_step) : 1)) return;
  static const char* mode = std::getenv("SPEEDRUN_TEST_FAIL_MODE");
  if (mode != nullptr && std::string(mode) == "abort") std::abort();
  throw UserError("SPEEDRUN_TEST_FAIL_RANK: injected failure at step " + std::to_string(step));
}

}  // namespace speedrun::dist
