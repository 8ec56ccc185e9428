// Test-only failure injection, so that the multi-process tests can make exactly one
// rank fail at a chosen step and check that the whole job ends (no hang):
//   SPEEDRUN_TEST_FAIL_RANK=R   the rank that fails (unset: nothing happens)
//   SPEEDRUN_TEST_FAIL_STEP=S   at the start of training step S (default 1)
//   SPEEDRUN_TEST_FAIL_MODE=M   "error" (an exception, default) or "abort" (SIGABRT)
// and, for the negative controls of the overlapped reduction's equivalence tests,
//   SPEEDRUN_TEST_BUCKET_FAULT=F   "early" or "skip" (dist::GradBucketer::Fault)
#pragma once

#include <cstdint>

#include "dist/grad_buckets.h"

namespace speedrun::dist {

void maybe_fail_for_test(int rank, int64_t step);

// SPEEDRUN_TEST_BUCKET_FAULT's fault (none when unset); throws UserError on another value.
GradBucketer::Fault bucket_fault_for_test();

}  // namespace speedrun::dist
