#!/usr/bin/env bash
# A CA with a quota: the engine (keyfactor connector) against `hsmenroll serve --rate-limit R`
# on loopback, which answers 429 with Retry-After above R requests/s. Two runs of the same batch:
#   - the CA entry with "RateLimit": R (the engine keeps under the quota by itself);
#   - without it (the engine learns the quota from the 429s and Retry-After alone).
# For each: certificates/s, the ratio to R, the 429s the server gave, and failed requests.
#   bench/ratelimit.sh [R] [SECONDS]   (default 25 requests/s for 20 s: R*SECONDS requests)
# Needs ./build. The SoftHSM store is on tmpfs and removed afterwards.
set -euo pipefail
R=${1:-25}
secs=${2:-20}
count=$(awk -v r="$R" -v s="$secs" 'BEGIN { printf "%d", r * s }')
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/hsmenroll
work=$(mktemp -d /dev/shm/hsmenroll-quota.XXXXXX)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export HSMENROLL_HOME=$work/home HSMENROLL_PIN=bench-user-pin HSMENROLL_SO_PIN=bench-so-pin-0
"$bin" ca init -q
export SOFTHSM2_CONF=$HSMENROLL_HOME/softhsm2.conf
hash=$(printf 'bench-secret\n' | "$bin" serve hash-password --iterations 1000)
printf '{"Users":[{"Name":"bench","Password":"%s"}]}' "$hash" > "$work/users.json"
chmod 600 "$work/users.json"
export KF_PASSWORD=bench-secret

start_server() { # sets $server and $url
    rm -f "$work/ready"
    "$bin" serve --listen 127.0.0.1:0 --credentials "$work/users.json" --ready-file "$work/ready" \
        --rate-limit "$R" 2> "$work/serve.log" &
    server=$!
    for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
    url=$(cat "$work/ready")
}
stop_server() { kill -INT "$server"; wait "$server" 2>/dev/null || true; server=""; }

engine_config() { # engine_config EXTRA (JSON members of the CA entry, with a leading comma)
    cat > "$work/engine.json" <<JSON
{"Hsm": {"Tokens": ["hsmenroll-keys"], "PinEnv": "HSMENROLL_PIN"},
 "CertificateAuthorities": [{"Id": 1, "Name": "kf", "Type": "keyfactor", "Url": "$url",
   "RemoteName": "embedded", "Auth": {"Type": "Basic", "User": "bench", "PasswordEnv": "KF_PASSWORD"}$1}],
 "Templates": [{"Id": 1, "Name": "Default", "CertificateAuthorities": [1]}],
 "EnrollmentPatterns": [{"Id": 1, "Name": "Default", "Template": 1}]}
JSON
}

awk -v n="$count" 'BEGIN { for (i = 1; i <= n; i++)
    printf "{\"Id\":\"q-%d\",\"Template\":\"Default\",\"Subject\":\"CN=q-%d.bench.example\",\"KeyType\":\"ECC\",\"Format\":\"PEM\"}\n", i, i }' > "$work/batch.ndjson"

echo "| engine's CA entry | R (/s) | requests | issued | failed | certificates/s | achieved / R | 429s from the CA |"
echo "|---|---|---|---|---|---|---|---|"
one() { # one LABEL EXTRA
    start_server
    engine_config "$2"
    local out=$work/out-$RANDOM
    "$bin" run "$work/batch.ndjson" -o "$out" --config "$work/engine.json" --progress never \
        --stats-json "$work/stats.json" 2>/dev/null || true
    stop_server
    local limited
    limited=$(sed -n 's/.*taken, \([0-9]*\) answered 429.*/\1/p' "$work/serve.log")
    jq -r --arg lab "$1" --arg r "$R" --arg l "${limited:-?}" \
        '"| \($lab) | \($r) | \(.Requests) | \(.Issued) | \(.Failed) | \(.CertificatesPerSecond * 10 | round / 10) | \(.CertificatesPerSecond / ($r | tonumber) * 1000 | round / 1000) | \($l) |"' \
        "$work/stats.json"
    rm -rf "$out"
}
one "\"RateLimit\": $R" ", \"RateLimit\": $R"
one "none (429 + Retry-After only)" ""
