#!/bin/sh
# NSS softokn (libsoftokn3.so from libnss3) loaded directly, configured by the parameter string in
# CK_C_INITIALIZE_ARGS.pReserved ($HSMENROLL_MODULE_INIT_ARGS). Two sql: databases made with
# certutil; the password of each is the user PIN. Their token labels are set by the parameter
# string (tokenDescription), so the "NSS Certificate DB" slot (ID 2, NSS's user private key and
# certificate slot) is labelled keys-nss and a second database is slot 5, ca-nss.
# Slot 1 is NSS's session-only crypto token (write-protected, no login).
# NSS has no SO PIN: HSMENROLL_SO_PIN is empty.
# DIR/env-proxy (root only) is the same two tokens through p11-kit-proxy.so: start registers
# /etc/pkcs11/modules/hsmenroll-nss.module (x-init-reserved carries the string), stop removes it.
# While it is registered, every p11-kit-proxy user on the machine sees these tokens (labelled
# apart from every other script's). start first removes a registration that an interrupted run
# left behind (its directory gone).
#   nss.sh start DIR | nss.sh stop DIR
set -eu
. "$(dirname "$0")/common.sh"
cmd=${1:-}
need_dir "${2:-}"
NSS_MODULE=/usr/lib/x86_64-linux-gnu/libsoftokn3.so
case $cmd in
start)
    need_pkg libnss3 libnss3-tools p11-kit-modules
    [ -f "$NSS_MODULE" ] || die "$NSS_MODULE missing (package libnss3)"
    printf '%s\n' "$PIN" >"$DIR/nss-password"
    for db in nssdb nssdb-ca; do
        rm -rf "${DIR:?}/$db"
        mkdir -p "$DIR/$db"
        certutil -N -d "sql:$DIR/$db" -f "$DIR/nss-password" >"$DIR/certutil.log" 2>&1 ||
            die "certutil -N failed: $(cat "$DIR/certutil.log")"
    done
    # Double quotes inside the string: NSS's parameter parser takes ' or " alike, and the sh env
    # file keeps the whole string in single quotes.
    args="configdir=\"sql:$DIR/nssdb\" certPrefix=\"\" keyPrefix=\"\" secmod=\"secmod.db\" flags= tokens=<0x1=[flags=readOnly,noCertDB,noKeyDB,optimizeSpace tokenDescription=\"NSS Generic Crypto Services\"] 0x2=[configdir=\"sql:$DIR/nssdb\" certPrefix=\"\" keyPrefix=\"\" tokenDescription=\"$TOKEN\"] 0x5=[configdir=\"sql:$DIR/nssdb-ca\" certPrefix=\"\" keyPrefix=\"\" tokenDescription=\"$TOKEN_CA\"]>"
    cat >"$DIR/env" <<EOE
export HSMENROLL_MODULE='$NSS_MODULE'
export HSMENROLL_MODULE_INIT_ARGS='$args'
export HSMENROLL_TEST_TOKEN='$TOKEN'
export HSMENROLL_TEST_TOKEN_CA='$TOKEN_CA'
export HSMENROLL_PIN='$PIN'
export HSMENROLL_SO_PIN=''
export HSMENROLL_NSS_DB='sql:$DIR/nssdb'
EOE
    if [ "$(id -u)" -eq 0 ]; then
        p11kit_register hsmenroll-nss "$NSS_MODULE" "$args"
        cat >"$DIR/env-proxy" <<EOE
$P11KIT_QUIET
export HSMENROLL_MODULE='$P11KIT_PROXY'
export HSMENROLL_TEST_TOKEN='$TOKEN'
export HSMENROLL_TEST_TOKEN_CA='$TOKEN_CA'
export HSMENROLL_PIN='$PIN'
export HSMENROLL_SO_PIN=''
export HSMENROLL_NSS_DB='sql:$DIR/nssdb'
EOE
    fi
    ;;
stop) stop_pids "$DIR"; p11kit_unregister hsmenroll-nss "$DIR" ;;
*) die "usage: $0 start|stop DIR" ;;
esac
