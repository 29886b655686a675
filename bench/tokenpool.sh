#!/usr/bin/env bash
# The token pool: token-storage keys spread over several SoftHSM tokens (Hsm.Tokens), since one
# SoftHSM token serialises its object store. For 1 and 2 tokens (new, empty ones each time),
# `hsmenroll bench --storage token --probe` runs the batch with each worker count and, right
# after, the raw PKCS#11 probe with as many threads on the same tokens (thread i in token i mod
# n, as the workers; the probe keeps its keys until its timing ends, as the engine keeps them).
#   bench/tokenpool.sh [COUNT] [WORKERS]   COUNT requests per run (default 1000), WORKERS a
#                                          comma-separated list (default 2,4)
# The token store is on tmpfs (/dev/shm), removed afterwards. Needs ./build.
set -euo pipefail
count=${1:-1000}
workers=${2:-2,4}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/hsmenroll
work=$(mktemp -d /dev/shm/hsmenroll-pool.XXXXXX)
trap 'rm -rf "$work"' EXIT
export HSMENROLL_HOME=$work/home HSMENROLL_PIN=bench-user-pin HSMENROLL_SO_PIN=bench-so-pin-0
"$bin" ca init -q
export SOFTHSM2_CONF=$HSMENROLL_HOME/softhsm2.conf

config() { # config FILE TOKEN... : the embedded CA of the home, keys spread over TOKEN...
    local file=$1; shift
    local tokens
    tokens=$(printf '"%s",' "$@")
    cat > "$file" <<JSON
{"Hsm": {"Tokens": [${tokens%,}], "PinEnv": "HSMENROLL_PIN", "SoPinEnv": "HSMENROLL_SO_PIN"},
 "CertificateAuthorities": [{"Id": 1, "Name": "embedded", "Type": "local", "Home": "$HSMENROLL_HOME/ca", "Token": "hsmenroll-ca", "PinFile": "$HSMENROLL_HOME/ca-pin"}],
 "Templates": [{"Id": 1, "Name": "Default", "CertificateAuthorities": [1]}],
 "EnrollmentPatterns": [{"Id": 1, "Name": "Default", "Template": 1}]}
JSON
    "$bin" token init --config "$file" -q
}

echo "| tokens | workers | requests | engine cert/s | raw probe token keygen+sign/s | engine / probe |"
echo "|---|---|---|---|---|---|"
for tokens in 1 2; do
    for w in ${workers//,/ }; do
        labels=""
        for t in $(seq "$tokens"); do labels="$labels pool-$tokens-$w-$t"; done
        # shellcheck disable=SC2086 # one label per word
        config "$work/t$tokens-w$w.json" $labels
        # --ca: this configuration's tokens and CA (a scratch one, removed with $work)
        "$bin" bench --config "$work/t$tokens-w$w.json" --ca embedded \
            --issued "$work/issued-t$tokens-w$w.ndjson" --storage token --format DER -n "$count" \
            --workers "$w" --probe -q --json "$work/t$tokens-w$w.out.json"
        jq -r --arg t "$tokens" '.Runs[0] |
            "| \($t) | \(.Workers) | \(.Issued) | \(.CertificatesPerSecond * 10 | round / 10) | \(.Probe.PerSecond * 10 | round / 10) | \(.Probe.EngineOverProbe * 100 | round / 100) |"' \
            "$work/t$tokens-w$w.out.json"
    done
done
