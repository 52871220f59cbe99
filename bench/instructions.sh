#!/usr/bin/env bash
# Instructions per operation of sipcheck's hot code, counted with callgrind (repeatable on a
# busy or virtual machine, unlike wall-clock benchmarks). Needs valgrind.
#
#   bench/instructions.sh                     # every operation
#   bench/instructions.sh parse detect-2      # some of them
#   bench/instructions.sh --allocs uas-call   # heap allocations per operation too (dhat)
#   bench/instructions.sh --stages            # uas-call's instructions per stage of the call
#
# Each operation runs 1,000 and 3,000 times; (Ir(3000) - Ir(1000)) / 2000 is printed, so that
# the program's start-up cancels out. With --allocs, the heap blocks allocated (valgrind's
# dhat) are counted the same way and printed beside the instructions.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v valgrind >/dev/null || { echo "needs valgrind (Debian package valgrind)" >&2; exit 2; }
allocs=0
stages=0
if [ "${1:-}" = "--allocs" ]; then
    allocs=1
    shift
elif [ "${1:-}" = "--stages" ]; then
    stages=1
    shift
fi
cargo build --quiet --release -p sipcheck-core --example instructions
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/instructions"
# --stages: the call's stages as functions of the core, each counted inclusively (with all it
# calls) by callgrind_annotate, 3,000 calls minus 1,000, over 2,000. Only uas-call has them:
# the example has no caller operation (building INVITE/ACK/BYE, parsing 180/200/200) and the
# core keeps no statistics (the shell's metrics are not in it).
if [ "$stages" = 1 ]; then
    command -v callgrind_annotate >/dev/null || { echo "needs callgrind_annotate (valgrind)" >&2; exit 2; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for n in 1000 3000; do
        valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$n" "$BIN" uas-call "$n" >/dev/null 2>&1
        callgrind_annotate --inclusive=yes --threshold=100 "$tmp/cg.$n" >"$tmp/an.$n" 2>/dev/null
    done
    python3 - "$tmp/an.1000" "$tmp/an.3000" <<'PY'
import re, sys

STAGES = [  # (label, function as callgrind names it); indented: inside the line above
    ("whole call, the example's writing of the requests included", "instructions::main"),
    ("parse the 3 received requests (INVITE with SDP, ACK, BYE)", "sipcheck_core::sip::msg::Message::parse_datagram"),
    ("endpoint: the 3 requests handled", "sipcheck_core::ua::call::Endpoint<D>::handle_message"),
    ("  transaction layer: matched, transaction created or driven", "sipcheck_core::sip::transaction::layer::TransactionLayer<D>::handle_message"),
    ("  call/dialog: the request to the call (UAS)", "sipcheck_core::ua::call::uas::<impl sipcheck_core::ua::call::Endpoint<D>>::on_request"),
    ("    SDP offer parsed", "sipcheck_core::sdp::parse::<impl sipcheck_core::sdp::SessionDescription>::parse"),
    ("    call ended (dialog removed)", "sipcheck_core::ua::call::Endpoint<D>::end_call"),
    ("accept: the 200 OK to the INVITE with its SDP answer", "sipcheck_core::ua::call::Endpoint<D>::accept"),
    ("  SDP answer written", "sipcheck_core::sdp::SessionDescription::write_to"),
    ("responses written (200 to INVITE, 200 to BYE)", "sipcheck_core::sip::build::write_response"),
    ("transaction layer: responses sent", "sipcheck_core::sip::transaction::layer::TransactionLayer<D>::respond"),
    ("transmits and events polled (drain)", "sipcheck_core::ua::call::Endpoint<D>::drain"),
    ("timers run out (transactions removed)", "sipcheck_core::ua::call::Endpoint<D>::handle_timeout"),
    ("heap: malloc (all stages)", "malloc"),
    ("heap: free (all stages)", "free"),
]


def read(path):
    out = {}
    for line in open(path, errors="replace"):
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S*?:(.+?) \[", line)
        if m:
            out.setdefault(m.group(2), int(m.group(1).replace(",", "")))
    return out


a, b = read(sys.argv[1]), read(sys.argv[2])
print("uas-call: instructions per call by function, inclusive (each figure contains what the "
      "function calls;\nfunctions call one another, so the lines overlap and do not add up)")
for label, fn in STAGES:
    if fn in a and fn in b:
        print(f"  {label:<74} {(b[fn] - a[fn]) // 2000:>8}")
    else:
        print(f"  {label:<74} {'-':>8}  (no function {fn} in this build: inlined?)")
PY
    exit 0
fi
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
