#!/bin/sh
# The layering, checked from the code: (1) every #include "dir/x.h" of a layer names a layer it
# may depend on (cli, serve -> engine -> ca -> batch -> formats; engine, ca -> hsm); (2) within
# each layer's library no two object files call each other in a circle (nm: who defines what
# whom uses; tsort finds the loops). Usage: test_layers.sh SOURCE_DIR BUILD_DIR
set -u
src=$1
build=${2:-}
fail=0

allowed() {
    case $1 in
    formats) echo "formats" ;;
    hsm) echo "hsm" ;;
    batch) echo "batch formats" ;;
    ca) echo "ca batch formats hsm" ;;
    engine) echo "engine ca batch formats hsm" ;;
    serve) echo "serve engine ca batch formats hsm" ;;
    cli) echo "cli serve engine ca batch formats hsm" ;;
    esac
}

for layer in formats hsm batch ca engine serve cli; do
    ok=$(allowed $layer)
    for f in "$src/$layer"/*.c "$src/$layer"/*.h; do
        [ -e "$f" ] || continue
        for dir in $(sed -n 's/^#include "\([a-z_0-9]*\)\/[^"]*".*/\1/p' "$f" | sort -u); do
            case " $ok " in
            *" $dir "*) ;;
            *)
                echo "layering: $layer/${f##*/} includes $dir/ (a $layer file may include: $ok)"
                fail=1
                ;;
            esac
        done
    done
done

# engine/run_state.h (struct run, job, worker) is the run core's own: other layers use engine/run.h.
for f in "$src"/cli/*.[ch] "$src"/serve/*.[ch]; do
    if grep -q '#include "engine/run_state.h"' "$f"; then
        echo "layering: ${f#"$src"/} includes engine/run_state.h, private to engine/ (use engine/run.h)"
        fail=1
    fi
done

if [ -n "$build" ]; then
    for layer in formats hsm batch ca engine serve cli; do
        lib=$(find "$build" -name "libhse_$layer.a" | head -n 1)
        [ -n "$lib" ] || { echo "layering: no libhse_$layer.a under $build"; fail=1; continue; }
        nm -A "$lib" 2>/dev/null | awk '
            { split($1, p, ":"); obj = p[2]; sub(/\.c\.o$/, "", obj) }
            $2 ~ /^[TDBR]$/ { def[$3] = obj }
            $2 == "U" { n++; user[n] = obj; sym[n] = $3 }
            END { for (i = 1; i <= n; i++) if ((sym[i] in def) && def[sym[i]] != user[i])
                      print user[i], def[sym[i]] }' | sort -u >"$build/layers-$layer.edges"
        if ! tsort "$build/layers-$layer.edges" >/dev/null 2>"$build/layers-$layer.loops"; then
            echo "layering: files of $layer/ call each other in a circle:"
            sed 's/^/  /' "$build/layers-$layer.loops"
            fail=1
        fi
    done
fi

if [ $fail -eq 0 ]; then
    echo "layering: every include and call runs down the layers, no circle within a layer"
fi
exit $fail
