# Shared by the module scripts (sourced, POSIX sh).
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

need_pkg() { # need_pkg PACKAGE... : fail clearly when a Debian package is missing
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            die "package $p is not installed (run scripts/modules-setup.sh)"
    done
}

need_dir() { # need_dir DIR : the state directory, created, made absolute
    [ -n "${1:-}" ] || die "usage: $0 start|stop DIR"
    mkdir -p "$1" || die "cannot create $1"
    DIR=$(cd "$1" && pwd)
}

free_port() { # a free TCP port on 127.0.0.1, from the kernel
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        die "cannot find a free port (python3 missing?)"
}

stop_pids() { # stop_pids DIR : TERM every DIR/*.pid, wait up to 5 s, then KILL
    for pf in "$1"/*.pid; do
        [ -f "$pf" ] || continue
        pid=$(cat "$pf")
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null
            i=0
            while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        fi
        rm -f "$pf"
    done
    return 0
}

# Test token names and PINs (every module here accepts 4-8 character numeric PINs). Each script
# labels its tokens after itself, and no label is a prefix of another (OpenSC's --token-label
# matches by prefix): a module left registered by an interrupted run, or two behind one p11-kit
# proxy, never lends a test a token of the same name.
MODULE_TAG=$(basename "$0" .sh)
TOKEN=keys-$MODULE_TAG
TOKEN_CA=ca-$MODULE_TAG
PIN=1234
SO_PIN=12345678

softhsm_init() { # softhsm_init DIR : a SoftHSM store under DIR/softhsm with both tokens
    need_pkg softhsm2
    mkdir -p "$1/softhsm/tokens"
    cat >"$1/softhsm/softhsm2.conf" <<EOC
directories.tokendir = $1/softhsm/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOC
    export SOFTHSM2_CONF="$1/softhsm/softhsm2.conf"
    softhsm2-util --init-token --free --label "$TOKEN" --pin "$PIN" --so-pin "$SO_PIN" >/dev/null ||
        die "softhsm2-util --init-token $TOKEN failed"
    softhsm2-util --init-token --free --label "$TOKEN_CA" --pin "$PIN" --so-pin "$SO_PIN" >/dev/null ||
        die "softhsm2-util --init-token $TOKEN_CA failed"
}
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

P11KIT_PROXY=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
P11KIT_CLIENT=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so

# p11-kit-proxy.so reads no user configuration when run as root (p11-kit skips ~/.config/pkcs11
# for root), so a module the proxy must load with settings of ours is registered system-wide, in
# /etc/pkcs11/modules/NAME.module; the scripts' stop removes that file again. Debian registers
# softhsm2, opensc, p11-kit-trust (not in the proxy) and tpm2_pkcs11 in /usr/share/p11-kit/modules;
# tpm2_pkcs11 without a TPM only logs errors and is skipped (critical: no): the env files set
# TSS2_LOG and TPM2_PKCS11_LOG_LEVEL to keep it quiet.
P11KIT_QUIET="export TSS2_LOG='all+NONE'
export TPM2_PKCS11_LOG_LEVEL=0"

# p11kit_unregister_stale : removes the registrations these scripts wrote whose state directory
# is gone (a run killed before its stop); a live one, of a run going on, stays.
p11kit_unregister_stale() {
    for f in /etc/pkcs11/modules/*.module; do
        [ -f "$f" ] || continue
        stale_dir=$(sed -n 's/^# written by hsmenroll tests\/modules for //p' "$f")
        [ -n "$stale_dir" ] && [ ! -d "$stale_dir" ] && rm -f "$f"
        # Written by an earlier version of these scripts, which named no directory.
        grep -q '^# written by hsmenroll tests/modules; removed by their stop' "$f" && rm -f "$f"
    done
    return 0
}

# p11kit_register NAME MODULE [INIT_RESERVED]
p11kit_register() {
    [ "$(id -u)" -eq 0 ] || die "registering a p11-kit module for the proxy needs root"
    mkdir -p /etc/pkcs11/modules
    p11kit_unregister_stale
    {
        printf '# written by hsmenroll tests/modules for %s\n' "$DIR"
        printf 'module: %s\ncritical: no\n' "$2"
        [ -z "${3:-}" ] || printf 'x-init-reserved: %s\n' "$3"
    } >"/etc/pkcs11/modules/$1.module"
}
p11kit_unregister() { # p11kit_unregister NAME DIR : only a file that this DIR's start wrote
    f="/etc/pkcs11/modules/$1.module"
    [ -f "$f" ] && grep -q "$2" "$f" && rm -f "$f"
    return 0
}
