#!/usr/bin/env bash
# Fuzz the sipcheck-core parsers with cargo-fuzz (libFuzzer).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
#   SECONDS_PER_TARGET  how long each target runs (default 60)
#   TARGET...           targets to run (default: all of `cargo fuzz list`)
#
# Each target runs once, one after another, for SECONDS_PER_TARGET seconds on a temporary
# copy of its seed corpus (fuzz/corpus/<target>/), so fuzzing never grows the repository.
# Prints the executions and executions per second of each target, and exits non-zero if any
# target crashed, leaked, ran out of memory (> 2048 MB) or hung (one input > 5 s). A
# crashing input is kept in fuzz/artifacts/<target>/ (ignored by git): minimize it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin -O <target> fuzz/artifacts/<target>/crash-...
# (from fuzz/), then copy it to fuzz/regressions/<target>/, where
# crates/sipcheck-core/tests/fuzz_regressions.rs replays it under `cargo test`.
#
# What it needs (it installs nothing itself):
#   * cargo-fuzz:  cargo install cargo-fuzz --locked     (tested with 0.13.2)
#   * a C++ compiler for libfuzzer-sys (g++ or clang++; Debian: build-essential).
#   * nightly compiler features. This machine has only a stable toolchain (rustc 1.95), so the
#     script sets RUSTC_BOOTSTRAP=1, which lets stable rustc/cargo accept the `-Z` flags
#     cargo-fuzz passes (-Zsanitizer=address, -Cpasses=sancov-module, ...). What was checked:
#       - without RUSTC_BOOTSTRAP=1, `cargo fuzz build` fails with
#         "the option `Z` is only accepted on the nightly compiler";
#       - RUSTC_BOOTSTRAP=1 cargo fuzz build -O          works: AddressSanitizer (the default
#         sanitizer, with LeakSanitizer) is linked in and catches leaks;
#       - RUSTC_BOOTSTRAP=1 cargo fuzz build -O -s none  works too (no sanitizer, faster; the
#         targets are safe Rust, so ASan mostly adds leak detection). Select it here with
#         FUZZ_SANITIZER=none: it runs 4-5x more executions per second. Each sanitizer has
#         its own target dir (fuzz/target/<sanitizer>/), so switching does not rebuild.
#       - --build-std is not used (it needs the rust-src component of a nightly toolchain).
#
# Environment:
#   FUZZ_SANITIZER   address (default) or none
#   FUZZ_MAX_LEN     libFuzzer -max_len (default: libFuzzer's choice, 4096 for this corpus)
#   FUZZ_RUNS        stop each target after this many executions (libFuzzer -runs), with
#                    SECONDS_PER_TARGET still the upper bound; e.g. the 10-million pass:
#                    FUZZ_SANITIZER=none FUZZ_RUNS=10000000 scripts/fuzz.sh 3600
#   FUZZ_KEEP_CORPUS a directory to copy each grown corpus to (<dir>/<target>/); by default
#                    the grown corpus is thrown away with the temporary directory.
#
# The machine has 2 cores: run it niced when others work on it, e.g.
#   nice -n 15 scripts/fuzz.sh 60
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ_DIR="$ROOT/fuzz"
SECONDS_PER_TARGET=${1:-60}
if [ $# -gt 0 ]; then
    shift
fi
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
SANITIZER=${FUZZ_SANITIZER:-address}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed; install it with:" >&2
    echo "    cargo install cargo-fuzz --locked" >&2
    exit 2
fi

# Stable rustc with nightly features: see the header.
export RUSTC_BOOTSTRAP=1

cd "$FUZZ_DIR"
if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi
for target in "${TARGETS[@]}"; do
    if [ ! -f "fuzz_targets/$target.rs" ]; then
        echo "unknown target '$target'; targets: $(cargo fuzz list | tr '\n' ' ')" >&2
        exit 2
    fi
done

echo "== building ${TARGETS[*]} (sanitizer: $SANITIZER)"
for target in "${TARGETS[@]}"; do
    cargo fuzz build -O -s "$SANITIZER" --target-dir "target/$SANITIZER" "$target"
done
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
BIN_DIR="$FUZZ_DIR/target/$SANITIZER/$TRIPLE/release"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sipcheck-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

dict_for() {
    case "$1" in
        sip_message | sip_stream) echo "$FUZZ_DIR/dicts/sip.dict" ;;
        *) echo "$FUZZ_DIR/dicts/$1.dict" ;;
    esac
}

failed=()
summary=()
for target in "${TARGETS[@]}"; do
    corpus="$WORK/corpus/$target"
    mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$target"
    if [ -d "corpus/$target" ]; then
        cp -R "corpus/$target/." "$corpus/"
    fi
    args=(
        "-max_total_time=$SECONDS_PER_TARGET"
        -rss_limit_mb=2048
        -timeout=5
        -print_final_stats=1
        "-artifact_prefix=$FUZZ_DIR/artifacts/$target/"
    )
    dict=$(dict_for "$target")
    if [ -f "$dict" ]; then
        args+=("-dict=$dict")
    fi
    if [ -n "${FUZZ_RUNS:-}" ]; then
        args+=("-runs=$FUZZ_RUNS")
    fi
    if [ -n "${FUZZ_MAX_LEN:-}" ]; then
        args+=("-max_len=$FUZZ_MAX_LEN")
    fi
    log="$WORK/$target.log"
    echo
    echo "== $target: ${SECONDS_PER_TARGET}s on a copy of $(find "$corpus" -type f | wc -l) seed input(s)"
    start=$(date +%s.%N)
    status=0
    "$BIN_DIR/$target" "${args[@]}" "$corpus" >"$log" 2>&1 || status=$?
    end=$(date +%s.%N)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=${execs:-?}
    rate=$(awk -v n="$execs" -v a="$start" -v b="$end" \
        'BEGIN { if (n ~ /^[0-9]+$/ && b > a) printf "%.0f", n / (b - a); else print "?" }')
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        # Show what libFuzzer said about the failure.
        result="FAILED (exit $status)"
        failed+=("$target")
        grep -E -A 30 '==ERROR|panicked|deadly signal|Test unit written|SUMMARY' "$log" | head -n 60 || tail -n 40 "$log"
    fi
    if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
        mkdir -p "$FUZZ_KEEP_CORPUS/$target"
        cp -R "$corpus/." "$FUZZ_KEEP_CORPUS/$target/"
    fi
    line=$(printf '%-18s %-20s %12s execs %9s execs/s  corpus %s' \
        "$target" "$result" "$execs" "$rate" "$(find "$corpus" -type f | wc -l)")
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (${SECONDS_PER_TARGET}s per target, sanitizer $SANITIZER)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
