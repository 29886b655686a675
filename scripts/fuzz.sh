#!/bin/sh
# Runs the libFuzzer targets of fuzz/: scripts/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]
# (default 10 s each, every target). Builds ./build-fuzz with clang and -DHSMENROLL_FUZZ=ON, then
# runs one target at a time on its corpus and dictionary. Inputs that add coverage go to
# build-fuzz/corpus/<target>; a crash, leak, UBSan report or timeout is written to
# fuzz/crashes/<target>-*, and the script exits non-zero. Needs scripts/setup.sh first.
set -eu
cd "$(dirname "$0")/.."

seconds=${1:-10}
[ $# -gt 0 ] && shift
case $seconds in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]" >&2
    exit 2
    ;;
esac
targets=$(sed -n 's/^set(FUZZ_TARGETS \(.*\))$/\1/p' fuzz/CMakeLists.txt)
if [ $# -gt 0 ]; then
    for t in "$@"; do
        case " $targets " in
        *" $t "*) ;;
        *)
            echo "fuzz: no target \"$t\" (targets: $targets)" >&2
            exit 2
            ;;
        esac
    done
    targets="$*"
fi

# The longest input each target is given (bytes): about the largest real input it parses.
max_len() {
    case $1 in
    request | config | serve_api | journal) echo 16384 ;;
    keyfactor | cfssl | pem_chain) echo 8192 ;;
    *) echo 1024 ;;
    esac
}

CC=clang cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DHSMENROLL_FUZZ=ON \
    -DHSMENROLL_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
build=""
for t in $targets; do build="$build fuzz_$t"; done
# shellcheck disable=SC2086 # one word per target
cmake --build build-fuzz -j"$(nproc)" --target $build >/dev/null

mkdir -p fuzz/crashes
failed=""
for t in $targets; do
    mkdir -p "build-fuzz/corpus/$t"
    echo "fuzz: $t for ${seconds} s" >&2
    if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "build-fuzz/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -dict="fuzz/dict/$t.dict" -artifact_prefix="fuzz/crashes/$t-" \
        "build-fuzz/corpus/$t" "fuzz/corpus/$t" >"build-fuzz/fuzz-$t.log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
            "build-fuzz/fuzz-$t.log" | sed "s/^/fuzz: $t /" >&2 || true
    else
        tail -n 40 "build-fuzz/fuzz-$t.log" >&2
        echo "fuzz: $t FAILED (log build-fuzz/fuzz-$t.log; input in fuzz/crashes/)" >&2
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed. Fix the bug, then move the input to fuzz/corpus/<target>/regress-<what>" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds} s without a finding" >&2
