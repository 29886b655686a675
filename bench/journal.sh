#!/usr/bin/env bash
# What the journal costs, and whether memory stays flat, measured in one run on this machine:
#   - the same batch (P-256, export, PEM, embedded CA) with the journal and with --no-journal,
#     OUTDIR on tmpfs and on disk (/var/tmp), taking turns, best of two each;
#   - peak RSS and wall time of a journaled run at each SIZE (flat means the batch size does
#     not show), and of --resume over the finished largest run (it reads the whole journal).
#   bench/journal.sh [COUNT [SIZE...]]     (defaults: 3000, then COUNT and 10 x COUNT)
# The SoftHSM store is on tmpfs in every case; nothing is kept.
set -euo pipefail
count=${1:-3000}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=("$count" $((count * 10)))
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/hsmenroll
work=$(mktemp -d /dev/shm/hsmenroll-journal.XXXXXX)
disk=$(mktemp -d /var/tmp/hsmenroll-journal.XXXXXX)
trap 'rm -rf "$work" "$disk"' EXIT
export HSMENROLL_HOME=$work/home HSMENROLL_PIN=bench-user-pin HSMENROLL_SO_PIN=bench-so-pin-0
"$bin" ca init -q

batch() { # batch FILE N
    awk -v n="$2" 'BEGIN { for (i = 1; i <= n; i++)
        printf "{\"Id\":\"j-%d\",\"Template\":\"Default\",\"Subject\":\"CN=j-%d.bench.example,O=Bench\",\"KeyType\":\"ECC\",\"KeyLength\":256,\"Format\":\"PEM\"}\n", i, i }' > "$1"
}
rate() { # rate BATCH OUTDIR [FLAGS] -> certificates/s
    rm -rf "$2"
    "$bin" run "$1" -o "$2" --progress never ${3:-} 2>&1 | sed -n 's/.*(\([0-9.]*\) certificates\/s).*/\1/p'
}
best() { awk 'BEGIN { m = 0 } { if ($1 > m) m = $1 } END { print m }'; }
rss() { # rss CMD... -> "peak RSS in MiB | wall seconds"
    /usr/bin/time -f '%M %e' "$@" 2>&1 >/dev/null | tail -n 1 |
        awk '{ printf "%.1f | %.0f", $1 / 1024, $2 }'
}

batch "$work/b.ndjson" "$count"
echo "| OUTDIR on | requests | with journal (cert/s) | --no-journal (cert/s) | journal / none |"
echo "|---|---|---|---|---|"
for where in "$work" "$disk"; do
    j=() n=()
    for round in 1 2; do
        j+=("$(rate "$work/b.ndjson" "$where/out")")
        n+=("$(rate "$work/b.ndjson" "$where/out" --no-journal)")
    done
    jb=$(printf '%s\n' "${j[@]}" | best)
    nb=$(printf '%s\n' "${n[@]}" | best)
    name=tmpfs
    [ "$where" = "$disk" ] && name="disk (/var/tmp)"
    awk -v w="$name" -v c="$count" -v j="$jb" -v n="$nb" \
        'BEGIN { printf "| %s | %d | %.1f | %.1f | %.2f |\n", w, c, j, n, (n > 0 ? j / n : 0) }'
done
rm -rf "$work/out" "$disk/out"

echo
echo "| run | lines | peak RSS (MiB) | wall (s) |"
echo "|---|---|---|---|"
for size in "${sizes[@]}"; do
    rm -rf "$work/out-big"
    batch "$work/big.ndjson" "$size"
    echo "| journaled run | $size | $(rss "$bin" run "$work/big.ndjson" -o "$work/out-big" --progress never -q) |"
done
echo "| --resume of the finished run (reads the whole journal) | $size | $(rss "$bin" run "$work/big.ndjson" -o "$work/out-big" --resume --progress never -q) |"
echo "journal size for $size lines: $(du -h "$work/out-big/journal.ndjson" | cut -f1)"
