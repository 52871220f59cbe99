#!/usr/bin/env bash
# Instructions per operation of sipcheck's hot code, counted with callgrind (repeatable on a
# busy or virtual machine, unlike wall-clock benchmarks). Needs valgrind.
#
#   bench/instructions.sh                 # every operation
#   bench/instructions.sh parse detect-2  # some of them
#
# Each operation runs 1,000 and 3,000 times; (Ir(3000) - Ir(1000)) / 2000 is printed, so that
# the program's start-up cancels out.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v valgrind >/dev/null || { echo "needs valgrind (Debian package valgrind)" >&2; exit 2; }
cargo build --quiet --release -p sipcheck-core --example instructions
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/instructions"
ops=("$@")
[ ${#ops[@]} -gt 0 ] || ops=(parse generate-1000 generate-dtmf detect-1 detect-2)
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$2" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for op in "${ops[@]}"; do
    a=$(count "$op" 1000)
    b=$(count "$op" 3000)
    printf '%-15s %8d instructions per operation\n' "$op" $(( (b - a) / 2000 ))
done
