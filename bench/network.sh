#!/usr/bin/env bash
# Concurrent submission over the network: the engine (keyfactor connector) against
# `hsmenroll serve` on loopback, measured in one run on this machine:
#   - serve --latency-ms 50 at --inflight 1 vs --inflight 256 (what concurrency buys against a
#     slow CA);
#   - serve with no added latency at --inflight 256 (the reference: 50 ms of CA latency should
#     cost little once enough requests are in flight).
#   bench/network.sh [COUNT]    COUNT requests at --inflight 256 (default 2000; --inflight 1 runs
#                               COUNT/20, since each takes at least 50 ms)
# Needs ./build. The SoftHSM store is on tmpfs and removed afterwards; server and engine share
# this machine's cores.
set -euo pipefail
count=${1:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/hsmenroll
work=$(mktemp -d /dev/shm/hsmenroll-net.XXXXXX)
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

start_server() { # start_server EXTRA... -> sets $server and $url
    rm -f "$work/ready"
    "$bin" serve --listen 127.0.0.1:0 --credentials "$work/users.json" --ready-file "$work/ready" \
        --max-connections 1024 -q "$@" &
    server=$!
    for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
    url=$(cat "$work/ready")
    cat > "$work/engine.json" <<JSON
{"Hsm": {"Tokens": ["hsmenroll-keys"], "PinEnv": "HSMENROLL_PIN"},
 "CertificateAuthorities": [{"Id": 1, "Name": "kf", "Type": "keyfactor", "Url": "$url",
   "RemoteName": "embedded", "Auth": {"Type": "Basic", "User": "bench", "PasswordEnv": "KF_PASSWORD"}}],
 "Templates": [{"Id": 1, "Name": "Default", "CertificateAuthorities": [1]}],
 "EnrollmentPatterns": [{"Id": 1, "Name": "Default", "Template": 1}]}
JSON
}
stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }

batch() { # batch FILE N
    awk -v n="$2" 'BEGIN { for (i = 1; i <= n; i++)
        printf "{\"Id\":\"n-%d\",\"Template\":\"Default\",\"Subject\":\"CN=n-%d.bench.example,O=Bench\",\"SANs\":{\"dns\":[\"n-%d.bench.example\"]},\"KeyType\":\"ECC\",\"KeyLength\":256,\"Format\":\"PEM\"}\n", i, i, i }' > "$1"
}

rate() { # rate N INFLIGHT -> certificates/s
    batch "$work/batch.ndjson" "$1"
    local out=$work/out-$RANDOM
    "$bin" run "$work/batch.ndjson" -o "$out" --config "$work/engine.json" --inflight "$2" \
        --progress never 2>&1 | sed -n 's/.*(\([0-9.]*\) certificates\/s).*/\1/p'
    rm -rf "$out"
}

start_server --latency-ms 50
slow1=$(rate "$((count / 20))" 1)
slow256=$(rate "$count" 256)
stop_server
start_server
fast256=$(rate "$count" 256)
stop_server

echo "| CA | --inflight | requests | certificates/s |"
echo "|---|---|---|---|"
echo "| serve --latency-ms 50 | 1 | $((count / 20)) | $slow1 |"
echo "| serve --latency-ms 50 | 256 | $count | $slow256 |"
echo "| serve (no added latency) | 256 | $count | $fast256 |"
awk -v a="$slow1" -v b="$slow256" -v c="$fast256" 'BEGIN {
    printf "\ninflight 256 / inflight 1 at 50 ms: %.1fx\n", (a > 0 ? b / a : 0)
    printf "50 ms latency / no added latency, both at inflight 256: %.2f\n", (c > 0 ? b / c : 0) }'
