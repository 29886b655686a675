#!/usr/bin/env bash
# The stock-tool pipeline hsmenroll is measured against: enrollment the way an operator scripts it
# without this engine, one request after another in each of WORKERS loops: pkcs11-tool generates
# the key pair in the token, `openssl req` signs the CSR with it through libp11's pkcs11 engine,
# curl posts it to a Keyfactor-style enrollment endpoint, and the certificate is written as PEM.
#
# Run by `hsmenroll bench --stock` (or by hand). Everything comes from the environment; no secret
# is an argument of this script:
#   STOCK_MODULE    PKCS#11 module (SoftHSM2: the scratch token is made with softhsm2-util)
#   STOCK_URL       base URL of the enrollment API (POST $STOCK_URL/Enrollment/CSR)
#   STOCK_USER, STOCK_PASSWORD   HTTP Basic credentials (handed to curl in a 0600 file)
#   STOCK_COUNT     requests in all (default 50); STOCK_WORKERS loops (default 1)
#   STOCK_KEY       pkcs11-tool key type (default EC:prime256v1; RSA:2048 ...)
#   STOCK_TEMPLATE  template name (default Default); STOCK_SANS DNS SANs per request (default 1)
#   STOCK_OUT       directory for the PEM files (default: a temporary one, removed)
#   STOCK_WORK      where the temporary directory goes (default $TMPDIR, else /tmp)
#   SOFTHSM2_CONF   as for the module
# pkcs11-tool (OpenSC 0.23) takes a PIN only from a terminal or its argument list, so the keys go
# to scratch tokens made for this run with throwaway PINs, never to the operator's token; they are
# deleted at the end. Each loop has its own token, as each engine worker has its own session:
# SoftHSM 2.6.1 processes writing objects into one token at once can fail each other. Prints one JSON line: {"count","workers","seconds","per_second","failed"}.
set -euo pipefail
: "${STOCK_MODULE:?}" "${STOCK_URL:?}" "${STOCK_USER:?}" "${STOCK_PASSWORD:?}"
count=${STOCK_COUNT:-50}
workers=${STOCK_WORKERS:-1}
key=${STOCK_KEY:-EC:prime256v1}
template=${STOCK_TEMPLATE:-Default}
sans=${STOCK_SANS:-1}
for tool in pkcs11-tool openssl curl jq softhsm2-util; do
    command -v "$tool" >/dev/null || { echo "stock-pipeline: $tool is not installed" >&2; exit 2; }
done

work=$(mktemp -d "${STOCK_WORK:-${TMPDIR:-/tmp}}/hsmenroll-stock.XXXXXX")
chmod 700 "$work"
out=${STOCK_OUT:-$work/out}
mkdir -p "$out"
token_prefix=stock-$$-$RANDOM
pin=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
so_pin=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
cleanup() {
    for ((w = 0; w < workers; w++)); do
        softhsm2-util --delete-token --token "$token_prefix-w$(printf %03d "$w")" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
(umask 077
 printf %s "$pin" > "$work/pin"
 printf 'user = "%s:%s"\n' "$STOCK_USER" "$STOCK_PASSWORD" > "$work/curl.conf")
for ((w = 0; w < workers; w++)); do
    softhsm2-util --module "$STOCK_MODULE" --init-token --free --label "$token_prefix-w$(printf %03d "$w")" \
        --so-pin "$so_pin" --pin "$pin" >/dev/null
done

# libp11's engine loads p11-kit's proxy unless told otherwise, and the proxy loads every module
# registered on the machine (tpm2, openCryptoki, ...): name the one module, as an operator would.
export PKCS11_MODULE_PATH="$STOCK_MODULE"

enroll_one() { # enroll_one N TOKEN: keygen, CSR, submit, PEM; returns non-zero on failure
    local n=$1 token=$2 id cn
    id=$(printf '%08x' "$n")
    cn=$(printf 'stock-%07d.bench.example' "$n")
    pkcs11-tool --module "$STOCK_MODULE" --token-label "$token" --login --pin "$pin" \
        --keypairgen --key-type "$key" --id "$id" --label "$cn" >/dev/null 2>&1 || return 1
    local san="DNS:$cn" s
    for ((s = 1; s < sans; s++)); do san="$san,DNS:san$s.$cn"; done
    local ext=()
    [ "$sans" -gt 0 ] && ext=(-addext "subjectAltName=$san")
    openssl req -new -engine pkcs11 -keyform engine \
        -key "pkcs11:token=$token;id=%${id:0:2}%${id:2:2}%${id:4:2}%${id:6:2};type=private;pin-source=file:$work/pin" \
        -subj "/CN=$cn/O=hsmenroll stock" "${ext[@]}" -out "$work/$n.csr" 2>/dev/null || return 1
    jq -n --rawfile csr "$work/$n.csr" --arg t "$template" \
        '{CSR: $csr, Template: $t, IncludeChain: true}' > "$work/$n.json"
    curl -sS -f -K "$work/curl.conf" -H 'Content-Type: application/json' \
        -H 'x-keyfactor-requested-with: APIClient' -H 'x-certificateformat: PEM' \
        --data-binary "@$work/$n.json" "$STOCK_URL/Enrollment/CSR" -o "$work/$n.resp" \
        2>/dev/null || return 1
    jq -er '.CertificateInformation.Certificates | join("\n")' "$work/$n.resp" \
        > "$out/$cn.pem" || return 1
    rm -f "$work/$n.csr" "$work/$n.json" "$work/$n.resp"
}

loop() { # loop W: requests W+1, W+1+workers, ... ; prints the number that failed
    local failed=0 n
    for ((n = $1 + 1; n <= count; n += workers)); do
        enroll_one "$n" "$token_prefix-w$(printf %03d "$1")" || failed=$((failed + 1))
    done
    echo "$failed" > "$work/failed-$1"
}

start=$(date +%s.%N)
pids=()
for ((w = 0; w < workers; w++)); do loop "$w" & pids+=($!); done
wait "${pids[@]}"
end=$(date +%s.%N)
failed=$(cat "$work"/failed-* | awk '{ s += $1 } END { print s + 0 }')
awk -v c="$count" -v w="$workers" -v s="$start" -v e="$end" -v f="$failed" 'BEGIN {
    printf "{\"count\":%d,\"workers\":%d,\"seconds\":%.3f,\"per_second\":%.3f,\"failed\":%d}\n",
        c, w, e - s, (c - f) / (e - s), f }'
