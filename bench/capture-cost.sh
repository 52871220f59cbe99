#!/usr/bin/env bash
# What `--pcap FILE --pcap-calls failed` costs a run of 2,000 media calls, both ends in this
# process (README: Cost of the reports and the capture at 2,000 media calls).
#
# Runs, in turn, RUNS pairs of `sipcheck run bench/scenarios/artifacts-2000.yaml` with every
# report written, with the capture (A) and without it (B), after one warm-up run of each, and
# prints each run's CPU (user + system, from the kernel's accounting as /usr/bin/time reads
# it), peak resident memory, exit status and the load average, then the medians and the
# pairs' CPU ratios. Build first: `cargo build --release`.
#
#   RUNS=3 bench/capture-cost.sh
#
# SIPCHECK=path picks another binary (to compare builds).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
sipcheck=${SIPCHECK:-$here/target/release/sipcheck}
runs=${RUNS:-3}
scenario=$here/bench/scenarios/artifacts-2000.yaml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

reports=(--json a.json --junit a.xml --html a.html --series a.csv --hdr-log a.hlog
  --calls a.jsonl --metrics a.txt)
capture=(--pcap a.pcap --pcap-calls failed)

# One run: "cpu_seconds peak_kib exit load1".
once() {
  local status=0
  /usr/bin/time -f 'times %U %S %M' -o time.txt "$sipcheck" run "$scenario" "${reports[@]}" \
    "$@" >out.txt 2>&1 || status=$?
  # (time.txt starts with "Command exited with non-zero status N" when it did.)
  read -r _ user sys peak < <(grep '^times ' time.txt)
  echo "$(echo "$user + $sys" | bc) $peak $status $(cut -d' ' -f1 /proc/loadavg)"
  grep 'pcap:' out.txt >&2 || true
}

once "${capture[@]}" >/dev/null
once >/dev/null
: >a.runs
: >b.runs
: >ratios
for i in $(seq "$runs"); do
  a=$(once "${capture[@]}")
  b=$(once)
  echo "$a" >>a.runs
  echo "$b" >>b.runs
  echo "scale=4; ${a%% *} / ${b%% *}" | bc >>ratios
  echo "pair $i: with the capture cpu ${a%% *} s, peak $(echo "$a" | cut -d' ' -f2) KiB," \
    "exit $(echo "$a" | cut -d' ' -f3); without cpu ${b%% *} s," \
    "peak $(echo "$b" | cut -d' ' -f2) KiB, exit $(echo "$b" | cut -d' ' -f3);" \
    "ratio $(echo "scale=3; ${a%% *} / ${b%% *}" | bc); load $(echo "$b" | cut -d' ' -f4)"
done

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
a_cpu=$(cut -d' ' -f1 a.runs | median)
b_cpu=$(cut -d' ' -f1 b.runs | median)
a_peak=$(cut -d' ' -f2 a.runs | median)
b_peak=$(cut -d' ' -f2 b.runs | median)
echo "median CPU: with the capture $a_cpu s, without $b_cpu s;" \
  "median of the pairs' ratios $(median <ratios) (min $(sort -n ratios | head -1)," \
  "max $(sort -n ratios | tail -1))"
echo "median peak memory: with the capture $((a_peak / 1024)) MiB, without $((b_peak / 1024)) MiB"
