#!/bin/sh
# `cmake --install` into a scratch prefix, then the installed tree used as an operator would,
# from another directory: --help, the man page (rendered without warnings, naming every command),
# the docs, and `bench --stock` finding its pipeline script in PREFIX/libexec/hsmenroll.
# Usage: test_install.sh BUILD_DIR
set -u
build=$1
tmp=$(mktemp -d "${TMPDIR:-/dev/shm}/hsmenroll-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
export HSMENROLL_HOME="$tmp/home"
unset HSMENROLL_PIN HSMENROLL_SO_PIN
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; echo "FAIL: cmake --install" >&2; exit 1; }
bin="$prefix/bin/hsmenroll"
for f in bin/hsmenroll libexec/hsmenroll/stock-pipeline.sh share/man/man1/hsmenroll.1 \
    share/doc/hsmenroll/README.md share/doc/hsmenroll/SECURITY.md \
    share/doc/hsmenroll/docs/ARCHITECTURE.md share/doc/hsmenroll/examples/config.json \
    share/doc/hsmenroll/examples/fleet.ndjson; do
    [ -e "$prefix/$f" ] || fail "not installed: $f"
done
[ -x "$prefix/libexec/hsmenroll/stock-pipeline.sh" ] || fail "stock-pipeline.sh not executable"

cd / || exit 1
# --help and the command list, from /.
"$bin" --help >"$tmp/help.txt" 2>&1 || fail "--help: exit $?"
grep -q "^usage: hsmenroll" "$tmp/help.txt" || fail "--help: no usage line"
commands=$("$bin" help --commands)
[ -n "$commands" ] || fail "help --commands lists nothing"

# The man page: man and groff render it without a warning, and it has every command.
MANWIDTH=80 man --warnings -l "$prefix/share/man/man1/hsmenroll.1" >"$tmp/man.txt" 2>"$tmp/man.err" ||
    fail "man -l: exit $?"
[ -s "$tmp/man.err" ] && fail "man -l warns: $(head -3 "$tmp/man.err")"
groff -man -Tascii -ww "$prefix/share/man/man1/hsmenroll.1" >"$tmp/groff.txt" 2>"$tmp/groff.err"
[ -s "$tmp/groff.err" ] && fail "groff warns: $(head -3 "$tmp/groff.err")"
col -bx <"$tmp/man.txt" >"$tmp/man.plain"
for c in $commands; do
    grep -q "hsmenroll $c" "$tmp/man.plain" || fail "man page: no \"hsmenroll $c\""
done
# One source: each command's --help is in the page as it is (its option lines, word for word).
for c in run token bench; do
    "$bin" help "$c" | grep -E '^  -' | head -3 | sed 's/^ *//' | while IFS= read -r line; do
        grep -qF -- "$line" "$tmp/man.plain" || echo "$c: $line"
    done >"$tmp/missing"
    [ -s "$tmp/missing" ] && fail "man page lacks --help lines: $(head -2 "$tmp/missing")"
done

# Usage errors: one line and a pointer, exit 2; `help nosuch` exits 2.
"$bin" run 2>"$tmp/usage.err"
[ $? -eq 2 ] || fail "run without a batch: not exit 2"
[ "$(wc -l <"$tmp/usage.err")" -eq 2 ] || fail "run without a batch: $(wc -l <"$tmp/usage.err") lines"
grep -q -- "hsmenroll run --help" "$tmp/usage.err" || fail "no pointer to run --help"
"$bin" nosuch 2>"$tmp/nosuch.err"
[ $? -eq 2 ] && [ "$(wc -l <"$tmp/nosuch.err")" -eq 1 ] || fail "unknown command: not one line, exit 2"
"$bin" help nosuch 2>/dev/null
[ $? -eq 2 ] || fail "help nosuch: not exit 2"

# bench --stock from the installed tree, small and bounded: the script found in libexec.
if command -v pkcs11-tool >/dev/null && command -v curl >/dev/null; then
    "$bin" bench -n 3 --workers 1 --stock 3 -v >"$tmp/bench.out" 2>"$tmp/bench.err" ||
        fail "bench --stock: exit $?: $(tail -3 "$tmp/bench.err")"
    grep -q "stock pipeline is $prefix/bin/../libexec/hsmenroll/stock-pipeline.sh" "$tmp/bench.err" ||
        fail "bench --stock: the script not taken from the install: $(grep stock "$tmp/bench.err")"
    grep -q "stock [0-9.]*/s" "$tmp/bench.out" || fail "bench --stock: no stock rate: $(cat "$tmp/bench.out")"
    grep -q "error" "$tmp/bench.err" && fail "bench --stock logged an error: $(grep error "$tmp/bench.err")"
else
    echo "test_install: pkcs11-tool or curl missing, bench --stock not tried" >&2
fi

if [ $failures -ne 0 ]; then
    echo "test_install: $failures failure(s)" >&2
    exit 1
fi
echo "test_install: all passed"
