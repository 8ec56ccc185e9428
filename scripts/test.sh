#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs dependencies, builds, runs every
# CTest test (C++ unit tests, CLI tests, PyTorch references; GPU suites report
# "skipped: no CUDA device" without a GPU), then rebuilds the parser and reader tests
# with AddressSanitizer + UBSan and runs them again.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

./scripts/setup.sh
cmake --preset default
cmake --build --preset default -j "$jobs"
ctest --preset default -j "$jobs"

cmake --preset asan
cmake --build --preset asan -j "$jobs" --target speedrun_tests
ASAN_OPTIONS=detect_leaks=1 ./build-asan/tests/speedrun_tests --gtest_filter='Config*:Shard*:Loader*:Tokenizer*:Safetensors*:ModelFile*:KvCache*'
echo "test.sh: all tests passed"
