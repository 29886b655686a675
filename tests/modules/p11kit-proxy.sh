#!/bin/sh
# p11-kit-proxy.so in front of SoftHSM. The proxy loads the modules registered system-wide
# (it reads no user configuration as root); Debian's softhsm2 package registers SoftHSM there
# (/usr/share/p11-kit/modules/softhsm2.module), and SOFTHSM2_CONF points it at the tokens under DIR.
# Nothing outside DIR is written. The proxy also shows SoftHSM's free uninitialised slot.
#   p11kit-proxy.sh start DIR | p11kit-proxy.sh stop DIR
set -eu
. "$(dirname "$0")/common.sh"
cmd=${1:-}
need_dir "${2:-}"
case $cmd in
start)
    need_pkg p11-kit-modules
    [ -f "$P11KIT_PROXY" ] || die "$P11KIT_PROXY missing (package p11-kit-modules)"
    softhsm_init "$DIR"
    [ "$(id -u)" -ne 0 ] || p11kit_unregister_stale
    [ -f /usr/share/p11-kit/modules/softhsm2.module ] ||
        die "/usr/share/p11-kit/modules/softhsm2.module missing (package softhsm2)"
    cat >"$DIR/env" <<EOE
export SOFTHSM2_CONF='$DIR/softhsm/softhsm2.conf'
$P11KIT_QUIET
export HSMENROLL_MODULE='$P11KIT_PROXY'
export HSMENROLL_TEST_TOKEN='$TOKEN'
export HSMENROLL_TEST_TOKEN_CA='$TOKEN_CA'
export HSMENROLL_PIN='$PIN'
export HSMENROLL_SO_PIN='$SO_PIN'
EOE
    ;;
stop) stop_pids "$DIR" ;;
*) die "usage: $0 start|stop DIR" ;;
esac
