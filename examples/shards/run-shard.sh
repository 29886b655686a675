#!/bin/sh
# One shard of a batch under a scheduler: Kubernetes Indexed Jobs, Slurm job arrays, GNU parallel.
# The shard index comes from the scheduler's environment, everything else from variables, so the
# same script serves every scheduler; a shard that was interrupted (preempted pod, requeued array
# task) resumes its own journal when it starts again.
#
#   HSMENROLL_BATCH    the batch file (the same for every shard)
#   HSMENROLL_SHARDS   N, the number of shards (Slurm: default SLURM_ARRAY_TASK_COUNT)
#   HSMENROLL_OUT      the directory under which shard I writes shard-I/ (results, journal, files)
#   HSMENROLL_CONFIG   the configuration; "%i" in it becomes the shard index, so each shard can
#                      name its own HSM partition (Hsm.Tokens) in shard-%i.json
#   HSMENROLL_MODULE   the PKCS#11 module, when the configuration names none
#   HSMENROLL_PIN      the user PIN (Hsm.PinEnv), e.g. from a Kubernetes Secret; never an argument
#   HSMENROLL_SO_PIN   the SO PIN (Hsm.SoPinEnv), only when a token is still to be made
#   HSMENROLL_BIN      the hsmenroll executable (default: on PATH, else next to this script)
#   SHARD_INDEX        the index, when no scheduler variable gives it
# The index: SHARD_INDEX, else JOB_COMPLETION_INDEX (Kubernetes), else SLURM_ARRAY_TASK_ID minus
# SLURM_ARRAY_TASK_MIN (Slurm). Exit: 0 when the shard is done (some requests may have failed:
# see its results.ndjson), 2 when nothing could be done, 3 when stopped (resumable: run again).
set -eu
: "${HSMENROLL_BATCH:?the batch file}" "${HSMENROLL_OUT:?the output directory}"
: "${HSMENROLL_CONFIG:?the configuration}"
# hsmenroll: HSMENROLL_BIN, else on PATH, else next to this script (installed: bin/ beside
# share/doc/hsmenroll/examples/shards/; a source tree: its build/ directory).
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${HSMENROLL_BIN:-}" ]; then
    hsmenroll=$HSMENROLL_BIN
elif command -v hsmenroll >/dev/null 2>&1; then
    hsmenroll=$(command -v hsmenroll)
else
    hsmenroll=
    for candidate in "$here/hsmenroll" "$here/../../build/hsmenroll" \
        "$here/../../../../../bin/hsmenroll"; do
        if [ -x "$candidate" ]; then
            hsmenroll=$candidate
            break
        fi
    done
    if [ -z "$hsmenroll" ]; then
        echo "run-shard: hsmenroll not found: set HSMENROLL_BIN, put it on PATH, or build it" \
            "(cmake -S . -B build && cmake --build build)" >&2
        exit 2
    fi
fi
if [ -n "${SHARD_INDEX:-}" ]; then
    index=$SHARD_INDEX
elif [ -n "${JOB_COMPLETION_INDEX:-}" ]; then
    index=$JOB_COMPLETION_INDEX
elif [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
    index=$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0}))
else
    echo "run-shard: no shard index (SHARD_INDEX, JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)" >&2
    exit 2
fi
shards=${HSMENROLL_SHARDS:-${SLURM_ARRAY_TASK_COUNT:-}}
[ -n "$shards" ] || { echo "run-shard: set HSMENROLL_SHARDS" >&2; exit 2; }
config=$(printf '%s' "$HSMENROLL_CONFIG" | sed "s/%i/$index/g")
out=$HSMENROLL_OUT/shard-$index
mkdir -p "$HSMENROLL_OUT"
# The shard's tokens (its own, the CA's) are made when missing: one process at a time, so
# shards started together on a new token store make each token once. Tokens that exist are
# left as they are (no SO PIN needed then).
"$hsmenroll" token init --config "$config" -q
set -- run "$HSMENROLL_BATCH" -o "$out" --config "$config" --shard "$index/$shards" \
    --progress never
[ -f "$out/journal.ndjson" ] && set -- "$@" --resume
rc=0
"$hsmenroll" "$@" || rc=$?
[ "$rc" -eq 1 ] && rc=0 # done; the failed requests are in results.ndjson
exit "$rc"
