#!/bin/sh
# openCryptoki (Debian 12: 3.8.1) soft token "swtok" behind pkcsslotd.
#   opencryptoki.sh start DIR | opencryptoki.sh stop DIR
# pkcsslotd and the token store cannot be relocated: the paths are compiled in
# (/etc/opencryptoki/opencryptoki.conf, /var/lib/opencryptoki/swtok, /var/lock/opencryptoki,
# /var/run/pkcsslotd.{pid,socket}, the shared memory /dev/shm/var.lib.opencryptoki.swtok and a
# System V segment). So this needs root, is machine-wide, and must not run twice at once. `start`
# is idempotent: it stops a running pkcsslotd, wipes the soft token, starts pkcsslotd again and
# initialises the token afresh (one token only: the soft token is one slot, slot 3 in Debian's
# configuration). DIR holds only env, logs and pkcsslotd.pid.
set -eu
. "$(dirname "$0")/common.sh"
cmd=${1:-}
need_dir "${2:-}"
OCK_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so
OCK_SLOT=3
OCK_DEFAULT_SO_PIN=87654321

stop_slotd() {
    stop_pids "$DIR"
    if [ -f /var/run/pkcsslotd.pid ]; then
        pid=$(cat /var/run/pkcsslotd.pid)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            i=0
            while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
    fi
    return 0
}

case $cmd in
start)
    need_pkg opencryptoki libopencryptoki0 opensc
    [ "$(id -u)" -eq 0 ] || die "needs root (pkcsslotd's paths are fixed system paths)"
    getent group pkcs11 >/dev/null || die "group pkcs11 missing (package opencryptoki)"
    stop_slotd
    # A fresh soft token: no store, no shared memory left from an earlier run.
    rm -rf /var/lib/opencryptoki/swtok
    rm -f /dev/shm/var.lib.opencryptoki.swtok /var/run/pkcsslotd.socket /var/run/pkcsslotd.pid
    for d in /var/lib/opencryptoki/swtok/TOK_OBJ /var/lock/opencryptoki/swtok /var/log/opencryptoki; do
        mkdir -p "$d"
        chgrp pkcs11 "$d"
        chmod 0770 "$d"
    done
    chgrp pkcs11 /var/lib/opencryptoki/swtok
    chmod 0770 /var/lib/opencryptoki/swtok
    pkcsslotd >"$DIR/pkcsslotd.log" 2>&1 || die "pkcsslotd failed: $(cat "$DIR/pkcsslotd.log")"
    i=0
    while [ ! -s /var/run/pkcsslotd.pid ] || [ ! -S /var/run/pkcsslotd.socket ]; do
        [ $i -lt 100 ] || die "pkcsslotd did not come up in 10 s"
        sleep 0.1; i=$((i + 1))
    done
    cp /var/run/pkcsslotd.pid "$DIR/pkcsslotd.pid"
    p11() { pkcs11-tool --module "$OCK_MODULE" --slot "$OCK_SLOT" "$@" >>"$DIR/init.log" 2>&1; }
    p11 --init-token --label "$TOKEN" --so-pin "$OCK_DEFAULT_SO_PIN" ||
        die "C_InitToken failed: $(tail -n 3 "$DIR/init.log")"
    p11 --login --login-type so --so-pin "$OCK_DEFAULT_SO_PIN" --change-pin --new-pin "$SO_PIN" ||
        die "changing the SO PIN failed: $(tail -n 3 "$DIR/init.log")"
    p11 --login --login-type so --so-pin "$SO_PIN" --init-pin --new-pin "$PIN" ||
        die "C_InitPIN failed: $(tail -n 3 "$DIR/init.log")"
    cat >"$DIR/env" <<EOE
export HSMENROLL_MODULE='$OCK_MODULE'
export HSMENROLL_TEST_TOKEN='$TOKEN'
export HSMENROLL_PIN='$PIN'
export HSMENROLL_SO_PIN='$SO_PIN'
EOE
    ;;
stop) stop_slotd ;;
*) die "usage: $0 start|stop DIR" ;;
esac
