#!/bin/sh
# Smoke check of every module environment: start, list the tokens, generate one RSA-2048 token key
# pair on the keys token (pkcs11-tool; for NSS loaded directly, which pkcs11-tool cannot give its
# parameter string, p11caps -t), stop. One line per environment; exit 1 when any failed.
#   tests/modules/smoke.sh [NAME...]     (default: all; needs root for opencryptoki and nss-proxy)
set -u
here=$(cd "$(dirname "$0")" && pwd)
base=$(mktemp -d "${TMPDIR_SMOKE:-/dev/shm}/hsmenroll-modules.XXXXXX") || exit 1
cc -O2 -o "$base/p11caps" "$here/p11caps.c" -ldl || { echo "smoke: cannot build p11caps" >&2; exit 1; }
names=${*:-"softhsm p11kit-proxy p11kit-remote nss nss-proxy opencryptoki tpm2"}
pass=0 fail=0
for name in $names; do
    script=$name envfile=env
    [ "$name" = nss-proxy ] && script=nss envfile=env-proxy
    dir="$base/$name"
    log="$dir.log"
    mkdir -p "$dir"
    t0=$(date +%s)
    (
        set -e
        "$here/$script.sh" start "$dir"
        . "$dir/$envfile"
        if [ -n "${HSMENROLL_MODULE_INIT_ARGS:-}" ]; then
            "$base/p11caps" "$HSMENROLL_MODULE" "$HSMENROLL_MODULE_INIT_ARGS" >"$dir/caps.json"
            grep -q "\"label\": \"$HSMENROLL_TEST_TOKEN\"" "$dir/caps.json"
            # RSA keygen, signing and the rest, on the token (p11caps -t)
            "$base/p11caps" -t "$HSMENROLL_TEST_TOKEN" -p "$HSMENROLL_PIN" "$HSMENROLL_MODULE" \
                "$HSMENROLL_MODULE_INIT_ARGS" >"$dir/tests.json"
            grep -q '"rsa2048_keygen_token": {"rv": "CKR_OK"' "$dir/tests.json"
        else
            pkcs11-tool --module "$HSMENROLL_MODULE" -L >"$dir/list.txt"
            grep -q "token label *: $HSMENROLL_TEST_TOKEN\$" "$dir/list.txt"
            pkcs11-tool --module "$HSMENROLL_MODULE" --token-label "$HSMENROLL_TEST_TOKEN" \
                --login --pin "$HSMENROLL_PIN" --keypairgen --key-type rsa:2048 \
                --label smoke --id 5a
        fi
    ) >"$log" 2>&1
    rc=$?
    "$here/$script.sh" stop "$dir" >>"$log" 2>&1 || rc=1
    t=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        echo "$name: ok (${t}s)"; pass=$((pass + 1))
    else
        echo "$name: failed (${t}s), log $log:"; tail -n 5 "$log" | sed 's/^/    /'
        fail=$((fail + 1))
    fi
done
echo "modules: $pass passed, $fail failed"
[ $fail -eq 0 ]
