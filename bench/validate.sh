#!/usr/bin/env bash
# How fast `hsmenroll validate` lints a large batch: generates LINES request lines (default
# 1,000,000: PFX requests with a quoted O, two SANs and metadata, every 1000th line broken in one
# of four ways), then times validate on them and reports lines/s and peak RSS. The batch lives in
# /dev/shm and is removed afterwards.
#   bench/validate.sh [LINES]
set -euo pipefail
lines=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/hsmenroll
work=$(mktemp -d /dev/shm/hsmenroll-validate.XXXXXX)
trap 'rm -rf "$work"' EXIT

awk -v n="$lines" 'BEGIN {
    for (i = 1; i <= n; i++) {
        key = "\"KeyType\":\"ECC\",\"KeyLength\":256"
        if (i % 1000 == 250) key = "\"KeyType\":\"DSA\""
        subject = sprintf("CN=dev-%07d.fleet.keyexample.com,OU=Fleet,O=\\\"Key Example, Inc.\\\",C=US", i)
        if (i % 1000 == 500) subject = "CN=dev,O=\\\"open"
        ip = sprintf("10.%d.%d.%d", int(i / 65536) % 256, int(i / 256) % 256, i % 256)
        if (i % 1000 == 750) ip = "10.0.0.300"
        id = sprintf("dev-%07d", (i % 1000 == 999) ? i - 1 : i)
        printf "{\"Id\":\"%s\",\"Template\":\"Default\",\"Subject\":\"%s\",\"SANs\":{\"dns\":[\"dev-%07d.fleet.keyexample.com\"],\"ip4\":[\"%s\"]},%s,\"Format\":\"PEM\",\"Metadata\":{\"Site\":\"A\"}}\n", id, subject, i, ip, key
    }
}' > "$work/batch.ndjson"

echo "batch: $lines lines, $(du -h "$work/batch.ndjson" | cut -f1), $(nproc) CPUs"
set +e
/usr/bin/time -f "peak RSS %M KiB, wall %e s" "$bin" validate "$work/batch.ndjson" \
    --home "$work/home" --output "$work/results.ndjson"
status=$?
set -e
echo "exit status $status (1 = some lines invalid, as generated)"
echo "invalid lines: $(grep -c '"Status":"invalid"' "$work/results.ndjson")"
