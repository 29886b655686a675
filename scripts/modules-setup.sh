#!/bin/sh
# Installs (only the missing ones, apt-get; sudo when not root) the Debian 12 packages that
# tests/modules/*.sh need to run the PKCS#11 module environments:
#   softhsm2                SoftHSM 2.6.1 (the token store behind softhsm, p11kit-proxy, p11kit-remote)
#   p11-kit p11-kit-modules p11-kit server, p11-kit-proxy.so, p11-kit-client.so
#   libnss3 libnss3-tools   NSS softokn (libsoftokn3.so) and certutil
#   opencryptoki libopencryptoki0   pkcsslotd, pkcsconf, libopencryptoki.so, the soft token
#   libtpm2-pkcs11-1 libtpm2-pkcs11-tools   libtpm2_pkcs11.so (and tpm2_ptool)
#   swtpm swtpm-tools libtss2-tcti-swtpm0 tpm2-tools   software TPM 2.0, its TCTI, tpm2_flushcontext
#   tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon   the TPM resource manager (on a private session bus)
#   opensc                  pkcs11-tool
#   libp11-kit-dev build-essential python3   <p11-kit/pkcs11.h> and cc for p11caps; python3 for free ports
set -eu
PACKAGES="softhsm2 p11-kit p11-kit-modules libnss3 libnss3-tools opencryptoki libopencryptoki0
libtpm2-pkcs11-1 libtpm2-pkcs11-tools swtpm swtpm-tools libtss2-tcti-swtpm0 tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon opensc
libp11-kit-dev build-essential python3"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "modules-setup: installing$missing" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null
fi
echo "modules-setup: all module packages installed" >&2
