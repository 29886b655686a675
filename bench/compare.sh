#!/usr/bin/env bash
# Engine vs the raw PKCS#11 probe, measured in one run on this machine: same SoftHSM2 module,
# same token, same number of threads, token store on tmpfs. Each case runs probe, engine, probe,
# engine and keeps the best of each, then prints the ratio engine / probe as a Markdown table.
#   bench/compare.sh [COUNT]          COUNT requests per case (default 2000; RSA cases use COUNT/10)
# Needs ./build (scripts/setup.sh). Nothing is kept: the token store lives in a temporary directory.
set -euo pipefail
count=${1:-2000}
threads=${THREADS:-$(nproc)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/hsmenroll
probe=$root/build/p11probe
work=$(mktemp -d /dev/shm/hsmenroll-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export HSMENROLL_HOME=$work/home HSMENROLL_PIN=bench-user-pin HSMENROLL_SO_PIN=bench-so-pin-0
"$bin" ca init -q
export SOFTHSM2_CONF=$HSMENROLL_HOME/softhsm2.conf

batch() { # batch FILE N FIELDS
    awk -v n="$2" -v f="$3" 'BEGIN { for (i = 1; i <= n; i++)
        printf "{\"Id\":\"b-%d\",\"Template\":\"Default\",\"Subject\":\"CN=b-%d.bench.example,O=Bench\",\"SANs\":{\"dns\":[\"b-%d.bench.example\"]},%s}\n", i, i, i, f }' > "$1"
}

engine_rate() { # engine_rate BATCH -> certificates/s of the pipeline (from the summary line)
    local out=$work/out-$RANDOM
    "$bin" run "$1" -o "$out" --workers "$threads" --progress never 2>&1 |
        sed -n 's/.*(\([0-9.]*\) certificates\/s).*/\1/p'
    rm -rf "$out"
}

probe_rate() { # probe_rate KEY N [--token-objects]
    "$probe" --token hsmenroll --threads "$threads" --key "$1" --count "$2" ${3:-} |
        sed -n 's/.*"per_second":\([0-9.]*\).*/\1/p'
}

best() { awk 'BEGIN { m = 0 } { if ($1 > m) m = $1 } END { print m }'; }

echo "| case | requests | threads | raw probe keygen+sign/s | engine certificates/s | engine / probe |"
echo "|---|---|---|---|---|---|"
run_case() { # run_case NAME N PROBE_KEY PROBE_FLAGS FIELDS
    local name=$1 n=$2 key=$3 flags=$4 fields=$5 p=() e=()
    batch "$work/batch.ndjson" "$n" "$fields"
    for round in 1 2; do
        p+=("$(probe_rate "$key" "$n" "$flags")")
        e+=("$(engine_rate "$work/batch.ndjson")")
    done
    local pb eb
    pb=$(printf '%s\n' "${p[@]}" | best)
    eb=$(printf '%s\n' "${e[@]}" | best)
    awk -v name="$name" -v n="$n" -v t="$threads" -v p="$pb" -v e="$eb" \
        'BEGIN { printf "| %s | %d | %d | %.1f | %.1f | %.2f |\n", name, n, t, p, e, (p > 0 ? e / p : 0) }'
}

run_case "P-256, export, PEM" "$count" p256 "" '"KeyType":"ECC","KeyLength":256,"Format":"PEM"'
run_case "P-256, token, DER" "$((count / 2))" p256 "--token-objects" '"KeyType":"ECC","KeyLength":256,"Format":"DER","KeyStorage":"token"'
run_case "Ed25519, export, PEM" "$count" ed25519 "" '"KeyType":"Ed25519","Format":"PEM"'
run_case "RSA-2048, export, PFX" "$((count / 10))" rsa2048 "" '"KeyType":"RSA","KeyLength":2048,"Format":"PFX"'
