#!/usr/bin/env bash
# Instructions per operation of sipcheck's hot code, counted with callgrind (repeatable on a
# busy or virtual machine, unlike wall-clock benchmarks). Needs valgrind.
#
#   bench/instructions.sh                     # every operation
#   bench/instructions.sh parse detect-2      # some of them
#   bench/instructions.sh --allocs uas-call   # heap allocations per operation too (dhat)
#   bench/instructions.sh --stages            # instructions per stage of a call (uas-call, uac-call)
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
# --stages [OP...]: the stages of a call (uas-call, uac-call; default both) as functions of the
# core, each counted inclusively (with all it calls) by callgrind_annotate, 3,000 calls minus
# 1,000, over 2,000. Statistics are not among them: the core's call path keeps none (the
# shell's metrics and histograms are outside the example).
if [ "$stages" = 1 ]; then
    command -v callgrind_annotate >/dev/null || { echo "needs callgrind_annotate (valgrind)" >&2; exit 2; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    sops=("$@")
    [ ${#sops[@]} -gt 0 ] || sops=(uas-call uac-call)
    for op in "${sops[@]}"; do
        for n in 1000 3000; do
            valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$n" "$BIN" "$op" "$n" >/dev/null 2>&1
            callgrind_annotate --inclusive=yes --threshold=100 "$tmp/cg.$n" >"$tmp/an.$n" 2>/dev/null
        done
        python3 - "$op" "$tmp/an.1000" "$tmp/an.3000" <<'PY'
import re, sys

C = "sipcheck_core::"
E = C + "ua::call::Endpoint<D>::"
T = C + "sip::transaction::layer::TransactionLayer<D>::"
STAGES = {  # (label, function as callgrind names it); indented: called from the line above
    "uas-call": [
        ("whole call, the example's writing of the requests included", "instructions::main"),
        ("parse the 3 received requests (INVITE with SDP, ACK, BYE)", C + "sip::msg::Message::parse_datagram"),
        ("endpoint: the 3 requests handled", E + "handle_message"),
        ("  transaction layer: matched, transaction created or driven", T + "handle_message"),
        ("  call/dialog: the request to the call (UAS)", C + "ua::call::uas::<impl sipcheck_core::ua::call::Endpoint<D>>::on_request"),
        ("    SDP offer parsed", C + "sdp::parse::<impl sipcheck_core::sdp::SessionDescription>::parse"),
        ("    call ended (dialog removed)", E + "end_call"),
        ("accept: the 200 OK to the INVITE with its SDP answer", E + "accept"),
        ("  SDP answer written", C + "sdp::SessionDescription::write_to"),
        ("build responses (200 to INVITE, 200 to BYE)", C + "sip::build::write_response"),
        ("transaction layer: responses sent", T + "respond"),
        ("transmits and events polled (drain)", E + "drain"),
        ("timers run out (transactions removed)", E + "handle_timeout"),
        ("heap: malloc (all stages)", "malloc"),
        ("heap: free (all stages)", "free"),
    ],
    "uac-call": [
        ("whole call, the example's writing of the responses included", "instructions::main"),
        ("build and send the INVITE (SDP offer, client transaction)", E + "invite"),
        ("  SDP offer created", C + "sdp::negotiate::create_offer"),
        ("build and send the ACK (from the 200's handling)", E + "send_ack"),
        ("build and send the BYE", E + "hangup"),
        ("requests written (INVITE, ACK, BYE)", C + "sip::build::RequestSpec::write"),
        ("transaction layer: requests sent (INVITE, BYE), not parsed", T + "send_built_request"),
        ("parse: the 3 responses received (180, 200 with SDP, 200)", C + "sip::msg::Message::parse_datagram"),
        ("endpoint: the 3 responses handled", E + "handle_message"),
        ("  transaction layer: matched, transaction driven", T + "handle_message"),
        ("  the 200 to the INVITE: dialog confirmed, answer taken, ACK", C + "ua::call::uac::<impl sipcheck_core::ua::call::Endpoint<D>>::on_invite_2xx"),
        ("    SDP answer parsed and negotiated", C + "sdp::negotiate::negotiated_from_answer"),
        ("  call ended (dialog removed)", E + "end_call"),
        ("transmits and events polled (drain)", E + "drain"),
        ("timers run out (transactions removed)", E + "handle_timeout"),
        ("heap: malloc (all stages)", "malloc"),
        ("heap: free (all stages)", "free"),
    ],
}


def read(path):
    out = {}
    for line in open(path, errors="replace"):
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S*?:(.+?) \[", line)
        if m:
            out.setdefault(m.group(2), int(m.group(1).replace(",", "")))
    return out


op = sys.argv[1]
if op not in STAGES:
    sys.exit(f"--stages knows {', '.join(STAGES)}, not {op}")
a, b = read(sys.argv[2]), read(sys.argv[3])
print(f"{op}: instructions per call by function, inclusive (each figure contains what the "
      "function calls;\nfunctions call one another, so the lines overlap and do not add up)")
for label, fn in STAGES[op]:
    if not fn:
        print(f"  {label}")
    elif fn in a and fn in b:
        print(f"  {label:<70} {(b[fn] - a[fn]) // 2000:>8}")
    else:
        print(f"  {label:<70} {'-':>8}  (no function {fn} in this build: inlined?)")
PY
    done
    exit 0
fi
ops=("$@")
[ ${#ops[@]} -gt 0 ] || ops=(parse generate-1000 generate-dtmf detect-1 detect-2 uas-call uac-call)
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
