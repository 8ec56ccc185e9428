// What every test file needs to know about its run: the seed of its fresh random inputs
// and whether a CUDA device is there. A CUDA test without a device reports
// "skipped: no CUDA device (<why>)" through GTEST_SKIP (CTest shows it as skipped, not
// passed), in every CUDA suite the same way.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "core/cuda_info.h"
#include "core/error.h"

namespace speedrun::test {

// Fresh inputs on every run; a failure prints the seed and SPEEDRUN_TEST_SEED=<seed> replays it.
inline uint64_t test_seed() {
  if (const char* env = std::getenv("SPEEDRUN_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

// One seed for the whole process, drawn (or read from SPEEDRUN_TEST_SEED) at the first call
// and printed then with `label`: for suites whose tests derive their streams from it
// (seed + 1, seed + 2, ...).
inline uint64_t process_seed(const char* label) {
  static const uint64_t seed = [label] {
    const char* env = std::getenv("SPEEDRUN_TEST_SEED");
    const uint64_t s = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::printf("%s seed %llu (SPEEDRUN_TEST_SEED replays)\n", label, static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

// Whether this process sees a CUDA device (asked once).
inline bool have_cuda_device() {
  static const bool yes = !query_cuda().devices.empty();
  return yes;
}

// The message of the UserError thrown by `f`, or "" when none is thrown.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

// A generator from a fresh seed, printed so that a failure can be looked into.
inline std::mt19937 seeded_rng() {
  const unsigned seed = std::random_device{}();
  std::printf("random seed %u\n", seed);
  return std::mt19937(seed);
}

}  // namespace speedrun::test

// In a test body or SetUp: skip, saying why, when there is no CUDA device (a CPU-only
// binary, no driver, no visible GPU).
#define SKIP_WITHOUT_CUDA()                                                                              \
  do {                                                                                                   \
    if (!::speedrun::test::have_cuda_device())                                                           \
      GTEST_SKIP() << "skipped: no CUDA device (" << ::speedrun::query_cuda().no_device_reason << ")"; \
  } while (0)
