#!/bin/sh
# Makes the man page hsmenroll(1) from the binary's own help texts (`help`, `help --commands` and
# each command's --help), so the page and --help have one source: the command table of cli/main.c
# and the commands' usage strings. Run at build time: make-man.sh HSMENROLL_BINARY OUTPUT
set -eu
bin=$1
out=$2
tmp="$out.tmp"

# Help text as roff in no-fill mode: backslashes, leading dots and quotes, and hyphens escaped.
esc() {
    sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/" -e 's/-/\\-/g'
}

version=$("$bin" version | sed -n 's/^hsmenroll //p')
{
    echo '.\" hsmenroll(1), generated from `hsmenroll help` and each command'"'"'s --help; do not edit.'
    echo ".TH HSMENROLL 1 \"\" \"hsmenroll $version\" \"User Commands\""
    echo '.SH NAME'
    echo 'hsmenroll \- bulk certificate enrollment with keys generated inside an HSM (PKCS#11)'
    echo '.SH SYNOPSIS'
    echo '.nf'
    for c in $("$bin" help --commands); do
        case $c in help | version) continue ;; esac
        # The usage lines of the command: up to its first empty line, "usage: " taken off.
        "$bin" help "$c" | sed -n '/^$/q;s/^usage: //;s/^       //;p' | esc
    done
    echo 'hsmenroll version'
    echo 'hsmenroll help [COMMAND]'
    echo '.fi'
    echo '.SH DESCRIPTION'
    echo '.nf'
    "$bin" help | sed '1,2d' | esc
    echo '.fi'
    echo '.SH COMMANDS'
    for c in $("$bin" help --commands); do
        case $c in help | version) continue ;; esac
        echo ".SS \"hsmenroll $c\""
        echo '.nf'
        "$bin" help "$c" | esc
        echo '.fi'
    done
    echo '.SH FILES'
    echo '.nf'
    echo '${XDG_DATA_HOME:\-~/.local/share}/hsmenroll   the default home: tokens, PINs, CA, notices'
    echo '.fi'
    echo '.SH SEE ALSO'
    echo 'The README in share/doc/hsmenroll (README.md), with SECURITY.md, docs/ and examples/.'
} >"$tmp"
mv "$tmp" "$out"
