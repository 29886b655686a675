#!/bin/sh
# tpm2-pkcs11 (libtpm2_pkcs11.so) over swtpm, a software TPM 2.0 on loopback TCP (server port P,
# control port P+1, both free ports found at start). State: the TPM in DIR/tpm, the tpm2-pkcs11
# store (sqlite) in DIR/store. When tpm2-abrmd is installed (the default: scripts/setup.sh), the
# module talks to the TPM through it, a resource manager on a private D-Bus session bus
# (dbus-daemon on DIR/dbus.sock, its own bus name): a bare swtpm has 3 transient object slots, and
# tpm2-pkcs11 keeps every key it generates or uses loaded, so without one a process gets about one
# key ("out of memory for object contexts", CKR_GENERAL_ERROR) and leaves them loaded at exit.
# HSMENROLL_TPM2_BARE=1 skips the resource manager (to see that limit). The tokens are made
# through PKCS#11 itself (C_InitToken/C_InitPIN with pkcs11-tool); C_InitToken creates the storage
# primary key, persistent 0x81000001.
#   tpm2.sh start DIR | tpm2.sh stop DIR
set -eu
. "$(dirname "$0")/common.sh"
cmd=${1:-}
need_dir "${2:-}"
TPM2_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so
case $cmd in
start)
    need_pkg swtpm libtpm2-pkcs11-1 libtss2-tcti-swtpm0 opensc
    [ -f "$TPM2_MODULE" ] || die "$TPM2_MODULE missing (package libtpm2-pkcs11-1)"
    stop_pids "$DIR"
    rm -rf "${DIR:?}/tpm" "${DIR:?}/store"
    mkdir -p "$DIR/tpm" "$DIR/store"
    # Two consecutive free loopback ports (swtpm's TCTI takes the control port as port + 1).
    port=$(python3 -c '
import socket
for _ in range(100):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
') || die "no free port pair"
    swtpm socket --tpm2 --tpmstate "dir=$DIR/tpm" \
        --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
        --flags not-need-init,startup-clear >"$DIR/swtpm.log" 2>&1 &
    echo $! >"$DIR/swtpm.pid"
    tcti="swtpm:host=127.0.0.1,port=$port"
    i=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null; do
        kill -0 "$(cat "$DIR/swtpm.pid")" 2>/dev/null || die "swtpm exited: $(cat "$DIR/swtpm.log")"
        [ $i -lt 100 ] || die "swtpm did not listen in 10 s"
        sleep 0.1; i=$((i + 1))
    done
    bus_env=""
    if [ "${HSMENROLL_TPM2_BARE:-0}" != 1 ]; then
        need_pkg tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon
        rm -f "$DIR/dbus.sock"
        dbus-daemon --session --fork --nopidfile --address="unix:path=$DIR/dbus.sock" \
            --print-pid=3 3>"$DIR/dbus.pid" >"$DIR/dbus.log" 2>&1 || die "dbus-daemon failed: $(cat "$DIR/dbus.log")"
        export DBUS_SESSION_BUS_ADDRESS="unix:path=$DIR/dbus.sock"
        name="com.intel.tss2.Tabrmd.h$port"
        tpm2-abrmd --session --allow-root --dbus-name="$name" --tcti="$tcti" >"$DIR/abrmd.log" 2>&1 &
        echo $! >"$DIR/abrmd.pid"
        tcti="tabrmd:bus_type=session,bus_name=$name"
        i=0
        until TPM2TOOLS_TCTI="$tcti" tpm2_getcap handles-persistent >/dev/null 2>&1; do
            kill -0 "$(cat "$DIR/abrmd.pid")" 2>/dev/null || die "tpm2-abrmd exited: $(cat "$DIR/abrmd.log")"
            [ $i -lt 100 ] || die "tpm2-abrmd did not answer in 10 s"
            sleep 0.1; i=$((i + 1))
        done
        bus_env="export DBUS_SESSION_BUS_ADDRESS='$DBUS_SESSION_BUS_ADDRESS'"
    fi
    export TPM2_PKCS11_TCTI="$tcti" TPM2_PKCS11_STORE="$DIR/store" TSS2_LOG='all+NONE'
    p11() { pkcs11-tool --module "$TPM2_MODULE" "$@" >>"$DIR/init.log" 2>&1; }
    idx=0
    for label in "$TOKEN" "$TOKEN_CA"; do
        # tpm2-pkcs11 always offers one empty slot after the initialised ones.
        p11 --slot-index "$idx" --init-token --label "$label" --so-pin "$SO_PIN" ||
            die "C_InitToken $label failed: $(tail -n 3 "$DIR/init.log")"
        p11 --token-label "$label" --login --login-type so --so-pin "$SO_PIN" --init-pin --new-pin "$PIN" ||
            die "C_InitPIN $label failed: $(tail -n 3 "$DIR/init.log")"
        idx=$((idx + 1))
    done
    cat >"$DIR/env" <<EOE
$bus_env
export TPM2TOOLS_TCTI='$tcti'
export TPM2_PKCS11_TCTI='$tcti'
export TPM2_PKCS11_STORE='$DIR/store'
export TSS2_LOG='all+NONE'
export HSMENROLL_MODULE='$TPM2_MODULE'
export HSMENROLL_TEST_TOKEN='$TOKEN'
export HSMENROLL_TEST_TOKEN_CA='$TOKEN_CA'
export HSMENROLL_PIN='$PIN'
export HSMENROLL_SO_PIN='$SO_PIN'
EOE
    ;;
stop) # the resource manager before its bus, the TPM last
    for p in abrmd dbus swtpm; do
        [ ! -f "$DIR/$p.pid" ] || { mkdir -p "$DIR/stop.$p" && mv "$DIR/$p.pid" "$DIR/stop.$p/" && stop_pids "$DIR/stop.$p"; rmdir "$DIR/stop.$p"; }
    done
    stop_pids "$DIR" ;;
*) die "usage: $0 start|stop DIR" ;;
esac
