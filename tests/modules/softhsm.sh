#!/bin/sh
# SoftHSM 2 (Debian's softhsm2), loaded directly: two tokens in a store under DIR.
#   softhsm.sh start DIR | softhsm.sh stop DIR
set -eu
. "$(dirname "$0")/common.sh"
cmd=${1:-}
need_dir "${2:-}"
case $cmd in
start)
    softhsm_init "$DIR"
    cat >"$DIR/env" <<EOE
export SOFTHSM2_CONF='$DIR/softhsm/softhsm2.conf'
export HSMENROLL_MODULE='$SOFTHSM_MODULE'
export HSMENROLL_TEST_TOKEN='$TOKEN'
export HSMENROLL_TEST_TOKEN_CA='$TOKEN_CA'
export HSMENROLL_PIN='$PIN'
export HSMENROLL_SO_PIN='$SO_PIN'
EOE
    ;;
stop) stop_pids "$DIR" ;;
*) die "usage: $0 start|stop DIR" ;;
esac
