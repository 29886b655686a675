#!/bin/sh
# One-time set-up on a Debian machine, safe to run again: installs the Debian packages hsmenroll
# builds with and its tests use (only those missing; sudo when not root), then builds ./build.
# clang and libclang-rt-dev (only recommended by clang: the libFuzzer and sanitizer runtimes) are
# for scripts/fuzz.sh.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential cmake pkg-config clang libclang-rt-dev openssl libssl-dev softhsm2
libp11-kit-dev libp11-dev libjansson-dev libcurl4-openssl-dev libcunit1-dev libmicrohttpd-dev
libgnutls28-dev libpcre2-dev zlib1g-dev curl jq libengine-pkcs11-openssl parallel
opensc gnutls-bin default-jre-headless golang-cfssl sqlite3 gnuplot-nox time valgrind python3
python3-jsonschema
libnss3 libnss3-tools opencryptoki libopencryptoki0 libtpm2-pkcs11-1 libtpm2-pkcs11-tools swtpm
swtpm-tools libtss2-tcti-swtpm0 tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon p11-kit
p11-kit-modules groff-base man-db bsdextrautils"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "setup: installing$missing" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "setup: built ./build/hsmenroll" >&2
