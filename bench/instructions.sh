#!/usr/bin/env bash
# Instructions per operation of sipcheck's hot code, counted with callgrind (repeatable on a
# busy or virtual machine, unlike wall-clock benchmarks). Needs valgrind.
#
#   bench/instructions.sh                     # every operation
#   bench/instructions.sh parse detect-2      # some of them
#   bench/instructions.sh --allocs uas-call   # heap allocations per operation too (dhat)
#
# Each operation runs 1,000 and 3,000 times; (Ir(3000) - Ir(1000)) / 2000 is printed, so that
# the program's start-up cancels out. With --allocs, the heap blocks allocated (valgrind's
# dhat) are counted the same way and printed beside the instructions.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v valgrind >/dev/null || { echo "needs valgrind (Debian package valgrind)" >&2; exit 2; }
allocs=0
if [ "${1:-}" = "--allocs" ]; then
    allocs=1
    shift
fi
cargo build --quiet --release -p sipcheck-core --example instructions
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/instructions"
ops=("$@")
[ ${#ops[@]} -gt 0 ] || ops=(parse generate-1000 generate-dtmf detect-1 detect-2 uas-call)
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$2" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
blocks() {
    valgrind --tool=dhat --dhat-out-file=/dev/null "$BIN" "$1" "$2" 2>&1 \
        | sed -n 's/.*Total: .* in \([0-9,]*\) blocks.*/\1/p' | tr -d ,
}
for op in "${ops[@]}"; do
    a=$(count "$op" 1000)
    b=$(count "$op" 3000)
    if [ "$allocs" = 1 ]; then
        x=$(blocks "$op" 1000)
        y=$(blocks "$op" 3000)
        printf '%-15s %8d instructions %6d.%02d allocations per operation\n' "$op" \
            $(( (b - a) / 2000 )) $(( (y - x) / 2000 )) $(( (y - x) % 2000 * 100 / 2000 ))
    else
        printf '%-15s %8d instructions per operation\n' "$op" $(( (b - a) / 2000 ))
    fi
done
