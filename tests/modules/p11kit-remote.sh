#!/bin/sh
# p11-kit remoting: `p11-kit server` serves the two SoftHSM tokens on the unix socket DIR/p11kit.sock;
# the module under test is the client, p11-kit-client.so, pointed there by P11_KIT_SERVER_ADDRESS.
#   p11kit-remote.sh start DIR | p11kit-remote.sh stop DIR
set -eu
. "$(dirname "$0")/common.sh"
cmd=${1:-}
need_dir "${2:-}"
case $cmd in
start)
    need_pkg p11-kit p11-kit-modules
    [ -f "$P11KIT_CLIENT" ] || die "$P11KIT_CLIENT missing (package p11-kit-modules)"
    softhsm_init "$DIR"
    sock="$DIR/p11kit.sock"
    rm -f "$sock"
    # The server process stays in the foreground (-f) so that $! is its PID.
    p11-kit server -f --provider "$SOFTHSM_MODULE" -n "$sock" \
        "pkcs11:token=$TOKEN" "pkcs11:token=$TOKEN_CA" >"$DIR/p11kit-server.log" 2>&1 &
    echo $! >"$DIR/p11kit-server.pid"
    i=0
    while [ ! -S "$sock" ]; do
        kill -0 "$(cat "$DIR/p11kit-server.pid")" 2>/dev/null ||
            die "p11-kit server exited: $(cat "$DIR/p11kit-server.log")"
        [ $i -lt 100 ] || die "p11-kit server made no socket in 10 s"
        sleep 0.1; i=$((i + 1))
    done
    cat >"$DIR/env" <<EOE
export SOFTHSM2_CONF='$DIR/softhsm/softhsm2.conf'
export P11_KIT_SERVER_ADDRESS='unix:path=$sock'
export HSMENROLL_MODULE='$P11KIT_CLIENT'
export HSMENROLL_TEST_TOKEN='$TOKEN'
export HSMENROLL_TEST_TOKEN_CA='$TOKEN_CA'
export HSMENROLL_PIN='$PIN'
export HSMENROLL_SO_PIN='$SO_PIN'
EOE
    ;;
stop) stop_pids "$DIR" ;;
*) die "usage: $0 start|stop DIR" ;;
esac
