#!/bin/sh
# Slurm job array: 8 shards of one batch, one array task each (submit from the directory that
# holds batch.ndjson, shard-0.json ... and examples/: `sbatch examples/shards/slurm-array.sh`).
# Slurm sets SLURM_ARRAY_TASK_ID/MIN/COUNT; a requeued task resumes its shard. The PIN is exported from a 0600 file here, never put on a command line.
# When all tasks are done: hsmenroll merge batch.ndjson out/shard-* -o out/results.ndjson
#SBATCH --job-name=hsmenroll
#SBATCH --array=0-7
#SBATCH --requeue
#SBATCH --cpus-per-task=4
#SBATCH --output=out/slurm-%A_%a.log
set -eu
export HSMENROLL_BATCH=$PWD/batch.ndjson HSMENROLL_OUT=$PWD/out
export HSMENROLL_CONFIG=$PWD/shard-%i.json HSMENROLL_MODULE=/usr/lib/vendor/libpkcs11.so
HSMENROLL_PIN=$(cat "$HOME/.hsmenroll-pin")
export HSMENROLL_PIN
exec "$SLURM_SUBMIT_DIR/examples/shards/run-shard.sh" # sbatch runs a copy of this script
