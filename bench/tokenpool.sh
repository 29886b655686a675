#!/usr/bin/env bash
# The token pool: token-storage keys spread over several SoftHSM tokens (Hsm.Tokens), since one
# SoftHSM token serialises its object store. For 1 and 2 tokens, with 2 workers, `hsmenroll
# bench --storage token --probe` runs the batch and, right after, the raw PKCS#11 probe with the
# same threads on the same tokens (thread i in token i mod n, as the workers).
#   bench/tokenpool.sh [COUNT] [WORKERS]     COUNT requests per run (default 1000), WORKERS (2)
# The token store is on tmpfs (/dev/shm), removed afterwards. Needs ./build.
set -euo pipefail
count=${1:-1000}
workers=${2:-2}
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
 "CertificateAuthorities": [{"Id": 1, "Name": "embedded", "Type": "local", "Home": "$HSMENROLL_HOME/ca", "Token": "hsmenroll-ca"}],
 "Templates": [{"Id": 1, "Name": "Default", "CertificateAuthorities": [1]}],
 "EnrollmentPatterns": [{"Id": 1, "Name": "Default", "Template": 1}]}
JSON
    "$bin" token init --config "$file" -q
}

config "$work/one.json" hsmenroll
config "$work/two.json" hsmenroll hsmenroll-2
echo "| tokens | workers | requests | engine cert/s | raw probe token keygen+sign/s | engine / probe |"
echo "|---|---|---|---|---|---|"
for cfg in one two; do
    "$bin" bench --config "$work/$cfg.json" --storage token --format DER -n "$count" \
        --workers "$workers" --probe -q --json "$work/$cfg.out.json"
    jq -r --arg t "$([ $cfg = one ] && echo 1 || echo 2)" '.Runs[0] |
        "| \($t) | \(.Workers) | \(.Issued) | \(.CertificatesPerSecond * 10 | round / 10) | \(.Probe.PerSecond * 10 | round / 10) | \(.Probe.EngineOverProbe * 100 | round / 100) |"' \
        "$work/$cfg.out.json"
done
jq -rs '"\ntwo tokens / one token: engine \(.[1].Runs[0].CertificatesPerSecond / .[0].Runs[0].CertificatesPerSecond * 100 | round / 100)x, probe \(.[1].Runs[0].Probe.PerSecond / .[0].Runs[0].Probe.PerSecond * 100 | round / 100)x"' \
    "$work/one.out.json" "$work/two.out.json"
