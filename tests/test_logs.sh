#!/bin/sh
# The log lines as an operator's tools see them, from the real binary with stderr to a file:
# an ISO 8601 UTC time on every text line, every --log-format json line an object jq parses (for
# each command), -v and -vv adding lines, and a one-time notice once per home across two runs.
# Usage: test_logs.sh HSMENROLL_BINARY SOURCE_DIR
set -u
bin=$1
src=$2
tmp=$(mktemp -d "${TMPDIR:-/dev/shm}/hsmenroll-logs.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
export HSMENROLL_HOME="$tmp/home"
unset HSMENROLL_PIN HSMENROLL_SO_PIN
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# Two lines of the sample batch: one ECC (wrapped) and the Ed25519 one (read, then wrapped: the
# module will not wrap it, a notice the engine gives once per home).
grep -m1 '"KeyType":"ECC"' "$src/examples/all-key-types.ndjson" >"$tmp/batch.ndjson"
grep -m1 '"Ed25519"' "$src/examples/all-key-types.ndjson" >>"$tmp/batch.ndjson"
[ "$(wc -l <"$tmp/batch.ndjson")" -eq 2 ] || fail "sample lines not found in all-key-types.ndjson"

# 1. Text lines, stderr a file: each starts with 2026-12-01T15:04:05.123Z.
"$bin" run "$tmp/batch.ndjson" -o "$tmp/out1" 2>"$tmp/run1.log"
rc=$?
[ $rc -eq 0 ] || fail "first run: exit $rc"
[ -s "$tmp/run1.log" ] || fail "first run logged nothing"
bad=$(grep -cvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z hsmenroll: (error|warning|info|debug): ' "$tmp/run1.log")
[ "$bad" -eq 0 ] || fail "$bad line(s) without a timestamp: $(grep -vE '^[0-9]{4}-' "$tmp/run1.log" | head -3)"
# The time is now (UTC), not some other clock: the date of the first line is today's or yesterday's.
today=$(date -u +%Y-%m-%d)
yesterday=$(date -u -d yesterday +%Y-%m-%d)
first=$(head -c 10 "$tmp/run1.log")
[ "$first" = "$today" ] || [ "$first" = "$yesterday" ] || fail "log date $first, today is $today"

# 2. A one-time notice: shown by the first run on this home, not by the second, and again by a
# run on another home.
n1=$(grep -c "will not wrap Ed25519" "$tmp/run1.log")
[ "$n1" -eq 1 ] || fail "first run: the Ed25519 notice $n1 times, want 1"
"$bin" run "$tmp/batch.ndjson" -o "$tmp/out2" 2>"$tmp/run2.log" || fail "second run failed"
n2=$(grep -c "will not wrap Ed25519" "$tmp/run2.log")
[ "$n2" -eq 0 ] || fail "second run on the same home: the notice again ($n2 times)"
grep -q "issued" "$tmp/run2.log" || fail "second run: no summary"
"$bin" run "$tmp/batch.ndjson" -o "$tmp/out3" --home "$tmp/home2" 2>"$tmp/run3.log" ||
    fail "run on a second home failed"
grep -q "will not wrap Ed25519" "$tmp/run3.log" || fail "another home: the notice not shown"
# Under -vv the known notice is still there, as a debug line.
"$bin" run "$tmp/batch.ndjson" -o "$tmp/out4" -vv 2>"$tmp/run4.log" || fail "-vv run failed"
grep -q "debug: the module will not wrap Ed25519" "$tmp/run4.log" ||
    fail "-vv: the known notice not shown as debug"

# 3. -v and -vv: more lines each, and what they add is what they promise.
"$bin" run "$tmp/batch.ndjson" -o "$tmp/q0" 2>"$tmp/v0.log"
"$bin" run "$tmp/batch.ndjson" -o "$tmp/q1" -v 2>"$tmp/v1.log"
"$bin" run "$tmp/batch.ndjson" -o "$tmp/q2" -vv 2>"$tmp/v2.log"
c0=$(wc -l <"$tmp/v0.log")
c1=$(wc -l <"$tmp/v1.log")
c2=$(wc -l <"$tmp/v2.log")
[ "$c0" -lt "$c1" ] && [ "$c1" -lt "$c2" ] || fail "line counts default $c0, -v $c1, -vv $c2"
grep -q "debug" "$tmp/v1.log" && fail "-v shows debug lines"
grep -q "mean time per request by stage" "$tmp/v1.log" || fail "-v: no stage times"
for want in "keygen: C_GenerateKeyPair" "csr: C_SignInit, C_Sign" "submit: CSR sent to CA" \
    "write: "; do
    grep -q "debug: .*$want" "$tmp/v2.log" || fail "-vv: no \"$want\" line"
done
# A failed line is listed with -v, with its code.
printf '{"Id":"x1","Subject":"CN=x1","KeyType":"RSA","KeyLength":1000}\n' >"$tmp/bad.ndjson"
"$bin" run "$tmp/bad.ndjson" -o "$tmp/b0" 2>"$tmp/b0.log"
"$bin" run "$tmp/bad.ndjson" -o "$tmp/b1" -v 2>"$tmp/b1.log"
grep -q "info: line 1 x1: " "$tmp/b0.log" && fail "default verbosity lists each failed line"
grep -q "info: line 1 x1: " "$tmp/b1.log" || fail "-v does not list the failed line"

# 4. --log-format json: every line of every command an object with time, level and message.
json_check() { # name, log file
    [ -s "$2" ] || return 0
    if ! jq -c . "$2" >/dev/null 2>&1; then
        fail "$1: a line is not JSON: $(head -3 "$2")"
        return
    fi
    n=$(jq -s '[.[] | select(((.time // "") | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$")) and ((.level // "") | test("^(error|warning|info|debug)$")) and (.message | type == "string") | not)] | length' "$2")
    [ "$n" = 0 ] || fail "$1: $n line(s) without time, level or message: $(head -3 "$2")"
    [ "$(jq -s length "$2")" -eq "$(wc -l <"$2")" ] || fail "$1: not one object a line"
}
has() { # file, jq condition: some line meets it
    [ "$(jq -s "[.[] | select($2)] | length" "$1")" -gt 0 ]
}
"$bin" run "$tmp/bad.ndjson" -o "$tmp/j1" -vv --log-format json 2>"$tmp/j1.log"
json_check "run" "$tmp/j1.log"
has "$tmp/j1.log" '.id == "x1" and .line == "1" and .code == "INVALID_KEY_LENGTH"' || fail "run json: the failed line's fields (id, code) missing"
"$bin" run "$tmp/batch.ndjson" -o "$tmp/j2" -vv --log-format=json 2>"$tmp/j2.log"
json_check "run -vv" "$tmp/j2.log"
has "$tmp/j2.log" '.stage == "keygen" and .id != null' ||
    fail "run -vv json: no keygen stage line with its id"
"$bin" validate "$tmp/bad.ndjson" -v --log-format json >/dev/null 2>"$tmp/j3.log"
json_check "validate" "$tmp/j3.log"
"$bin" token list --log-format json -v >/dev/null 2>"$tmp/j4.log"
json_check "token list" "$tmp/j4.log"
"$bin" ca show --log-format json -vv >/dev/null 2>"$tmp/j5.log"
json_check "ca show" "$tmp/j5.log"
"$bin" run "$tmp/batch.ndjson" -o "$tmp/j6" --home "$tmp/home3" --log-format json \
    2>"$tmp/j6.log" >/dev/null
json_check "run on a new home" "$tmp/j6.log"
grep -q '"generated a user PIN' "$tmp/j6.log" || fail "json: first-run set-up lines missing"
"$bin" merge "$tmp/batch.ndjson" "$tmp/j2/results.ndjson" -o "$tmp/merged.ndjson" \
    --log-format json 2>"$tmp/j7.log" >/dev/null
json_check "merge" "$tmp/j7.log"
# Usage errors in JSON too: a bad option and a missing operand, each one object.
"$bin" run --log-format json --no-such-option 2>"$tmp/j8.log"
[ $? -eq 2 ] || fail "json bad option: not exit 2"
json_check "run --no-such-option" "$tmp/j8.log"
[ "$(wc -l <"$tmp/j8.log")" -eq 1 ] || fail "json bad option: $(wc -l <"$tmp/j8.log") lines"
"$bin" ca --log-format json 2>"$tmp/j9.log"
json_check "ca without an operand" "$tmp/j9.log"
has "$tmp/j9.log" '.level == "error" and (.message | test("ca --help"))' ||
    fail "json usage error: no pointer to --help"
# A bad option value and a refused overlap, the commands' own messages: one object each.
"$bin" run --log-format json --workers 0 "$tmp/batch.ndjson" 2>"$tmp/j10.log"
[ $? -eq 2 ] || fail "json --workers 0: not exit 2"
json_check "run --workers 0" "$tmp/j10.log"
has "$tmp/j10.log" '.level == "error" and (.message | test("--workers takes a number"))' ||
    fail "json --workers 0: message missing"
"$bin" validate --log-format json "$tmp/batch.ndjson" --output "$tmp/batch.ndjson" 2>"$tmp/j11.log"
[ $? -eq 2 ] || fail "json overlap: not exit 2"
json_check "validate --output over its input" "$tmp/j11.log"
# A bad value is a usage error of one line.
"$bin" run "$tmp/batch.ndjson" --log-format xml 2>"$tmp/xml.log"
[ $? -eq 2 ] || fail "--log-format xml: not exit 2"
[ "$(wc -l <"$tmp/xml.log")" -eq 1 ] || fail "--log-format xml: not one line"

if [ $failures -ne 0 ]; then
    echo "test_logs: $failures failure(s)" >&2
    exit 1
fi
echo "test_logs: all passed"
