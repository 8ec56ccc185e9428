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

GradBucketer::Fault bucket_fault_for_test() {
  const char* fault = std::getenv("SPEEDRUN_TEST_BUCKET_FAULT");
  if (fault == nullptr || *fault == '\0') return GradBucketer::Fault::none;
  if (std::string(fault) == "early") return GradBucketer::Fault::early;
  if (std::string(fault) == "skip") return GradBucketer::Fault::skip;
  throw UserError(std::string("SPEEDRUN_TEST_BUCKET_FAULT='") + fault + "': expected early or skip");
}

}  // namespace speedrun::dist
