#!/bin/sh
# The whole test suite, twice: on ./build, then on ./build-asan (AddressSanitizer +
# UndefinedBehaviorSanitizer, leak checking on); then each fuzz target of fuzz/ for
# HSMENROLL_FUZZ_SECONDS (default 10; 0 skips) with scripts/fuzz.sh. Needs scripts/setup.sh first.
set -eu
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake --build build -j"$jobs" >/dev/null
ctest --test-dir build --output-on-failure -j"$jobs"

cmake -S . -B build-asan -DHSMENROLL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
ctest --test-dir build-asan --output-on-failure -j"$jobs"

fuzz_seconds=${HSMENROLL_FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" != 0 ]; then
    scripts/fuzz.sh "$fuzz_seconds"
fi
