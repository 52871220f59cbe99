#!/usr/bin/env bash
# sipcheck and SIPp over TLS, side by side: new TLS connections per second and TLS calls per
# second, each tool calling a responder of its own kind on loopback.
#
#   bench/sipp-tls.sh build            build SIPp 3.6.1 with TLS into the cache (once)
#   bench/sipp-tls.sh measure          measure (builds first if needed); prints a table
#   bench/sipp-tls.sh                  both
#
# Debian's SIPp (`sip-tester`, "v3.6.1-SCTP-PCAP-RTPSTREAM") is built without TLS. This
# script builds the same release with `-DUSE_SSL=1` (and SCTP, PCAP and GSL as Debian does)
# with cmake into $SIPP_TLS_CACHE (default ~/.cache/sipcheck/sipp-tls), outside the
# repository. The source is Debian's upstream tarball, checked against its SHA-256 (the
# one Debian's sip-tester_3.6.1-1.dsc lists). Where that tarball cannot be downloaded,
# SIPP_GIT=DIR-or-URL takes the source from a git repository of SIPp instead: the tree of
# the v3.6.1 release commit, checked by its hash, with the version.h the release tarball
# carries. Build dependencies are installed with apt-get (as root, else with sudo).
# bench/sipp/*.patch are applied to the source before building (tls-ca-without-crl.patch:
# 3.6.1 refuses -tls_ca without -tls_crl); 3.6.1 builds against OpenSSL 3.0 otherwise
# unchanged. SIPp's uac over one TLS connection (`-t l1`) stalls after its first calls on
# this build; it is bounded by `timeout` and its row shows the calls that passed.
#
# What is measured (each process pinned: the caller on core 0, the responder on core 1, with
# `taskset`; user and system CPU apart, from the kernel's accounting of each process; RUNS
# runs, default 3, the tools alternating within each run):
#   conn   new TLS connections/s: CONN_CALLS 0-length calls (default 6000) at CONN_RATE/s
#          (default 600), each over a TLS connection of its own:
#          sipcheck `run bench/scenarios/tls-caller.yaml` with one UA per call and
#          `connections: per_ua` -> `sipcheck answer --transport tls`;
#          SIPp `-sn uac -t ln` (one TLS connection per call) -> SIPp `-sn uas -t l1`.
#   calls  TLS calls/s: CALLS 0-length calls (default 10000) at RATE/s (default 2000) over
#          one TLS connection: sipcheck `connections: per_role` (100 UAs) -> answer;
#          SIPp `-t l1` -> uas.
# Certificates: a CA and a server certificate for IP 127.0.0.1 (ECDSA P-256) made here with
# openssl; sipcheck verifies the responder's certificate (--ca), SIPp's uac its chain
# (-tls_ca; SIPp checks no name).
#
# Environment: SIPCHECK (default target/release/sipcheck), RUNS, CONN_CALLS, CONN_RATE,
# CALLS, RATE, MODES (default "conn calls"), KEEP=1 keeps the logs. SIPCHECK_TLS_GROUPS (e.g.
# p384) is passed on to sipcheck: the key exchange groups it offers and takes, in order.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

CACHE=${SIPP_TLS_CACHE:-$HOME/.cache/sipcheck/sipp-tls}
SIPP=$CACHE/bin/sipp
TARBALL_URL=http://deb.debian.org/debian/pool/main/s/sip-tester/sip-tester_3.6.1.orig.tar.gz
TARBALL_SHA256=6a560e83aff982f331ddbcadfb3bd530c5896cd5b757dd6eb682133cc860ecb1
# The commit of SIPp's v3.6.1 tag, the release the tarball was made from.
RELEASE_COMMIT=eef7746fd28cd44b4d1a6a5b2e3b8be0af69d2a4
DEPS=(cmake make g++ pkg-config libssl-dev libpcap-dev libncurses-dev libsctp-dev libgsl-dev)

SIPCHECK=${SIPCHECK:-target/release/sipcheck}
RUNS=${RUNS:-3}
CONN_CALLS=${CONN_CALLS:-6000}
CONN_RATE=${CONN_RATE:-600}
CALLS=${CALLS:-10000}
RATE=${RATE:-2000}
MODES=${MODES:-conn calls}

say() { echo "sipp-tls: $*" >&2; }

install_deps() {
    local missing=()
    for p in "${DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}

# The source tree of SIPp 3.6.1 in $1 (emptied first).
fetch_source() {
    local src=$1 tarball=$CACHE/sip-tester_3.6.1.orig.tar.gz
    rm -rf "$src" && mkdir -p "$src"
    if [ ! -f "$tarball" ]; then
        curl -fsSL -o "$tarball.part" "$TARBALL_URL" && mv "$tarball.part" "$tarball" \
            || { rm -f "$tarball.part"; say "could not download $TARBALL_URL"; }
    fi
    if [ -f "$tarball" ]; then
        if ! echo "$TARBALL_SHA256  $tarball" | sha256sum -c --quiet -; then
            say "$tarball: SHA-256 mismatch; removed"
            rm -f "$tarball"
            exit 1
        fi
        tar -xzf "$tarball" -C "$src" --strip-components=1
        return
    fi
    if [ -z "${SIPP_GIT:-}" ]; then
        say "no source: give SIPP_GIT=DIR-or-URL of a SIPp git repository (e.g."
        say "https://github.com/SIPp/sipp.git) to build its v3.6.1 release commit"
        exit 1
    fi
    local git=$CACHE/sipp.git
    if [ -d "$SIPP_GIT" ] && git --git-dir="$SIPP_GIT" rev-parse -q --verify "$RELEASE_COMMIT^{commit}" >/dev/null 2>&1; then
        git=$SIPP_GIT
    elif [ -d "$SIPP_GIT/.git" ]; then
        git=$SIPP_GIT/.git
    else
        [ -d "$git" ] || git clone --bare --quiet "$SIPP_GIT" "$git"
    fi
    git --git-dir="$git" rev-parse -q --verify "$RELEASE_COMMIT^{commit}" >/dev/null \
        || { say "$SIPP_GIT has no commit $RELEASE_COMMIT (v3.6.1)"; exit 1; }
    say "building from $SIPP_GIT at $RELEASE_COMMIT (v3.6.1), not the Debian tarball"
    git --git-dir="$git" archive "$RELEASE_COMMIT" | tar -x -C "$src"
    # What the release tarball adds to the tree: the version, as `git describe` gave it.
    printf '#define SIPP_VERSION VERSION\n#define VERSION "v3.6.1"\n' >"$src/include/version.h"
}

# What the binary was built from: the release and the patches (a change rebuilds).
stamp() {
    { echo "$TARBALL_SHA256 $RELEASE_COMMIT"; cat "$repo"/bench/sipp/*.patch 2>/dev/null; } \
        | sha256sum | cut -d' ' -f1
}

build() {
    if [ -x "$SIPP" ] && [ "$(cat "$CACHE/bin/stamp" 2>/dev/null)" = "$(stamp)" ]; then
        say "have $SIPP"
        return
    fi
    install_deps
    mkdir -p "$CACHE"
    local src=$CACHE/src build=$CACHE/build
    fetch_source "$src"
    for p in "$repo"/bench/sipp/*.patch; do
        [ -f "$p" ] || continue
        say "applying $(basename "$p")"
        patch -d "$src" -p1 --quiet <"$p"
    done
    rm -rf "$build" && mkdir -p "$build"
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DUSE_SSL=1 -DUSE_SCTP=1 -DUSE_PCAP=1 -DUSE_GSL=1 >"$build/cmake.log"
    make -C "$build" -j"$(nproc)" sipp >"$build/make.log" 2>&1 \
        || { tail -30 "$build/make.log"; exit 1; }
    mkdir -p "$CACHE/bin"
    cp "$build/sipp" "$SIPP"
    stamp >"$CACHE/bin/stamp"
    say "built $(version) with TLS: $SIPP"
}

version() { "$SIPP" -v 2>&1 | grep -o 'SIPp v[^ ]*[^ .]' | head -1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# utime and stime of a live process, in clock ticks: "U S".
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

wait_listen() {
    local pid=$1 port=$2
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || return 1
        ss -Hltn "sport = :$port" | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

stop() {
    local pid=$1
    kill -INT "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

certs() {
    local d=$1 ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
    openssl req -x509 -nodes "${ec[@]}" -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 \
        -subj /CN=bench-ca 2>/dev/null
    openssl req -nodes "${ec[@]}" -keyout "$d/key.pem" -out "$d/cert.csr" -subj /CN=bench 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$d/cert.ext"
    openssl x509 -req -in "$d/cert.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -out "$d/cert.pem" -days 2 -extfile "$d/cert.ext" 2>/dev/null
}

# One measurement: tool (sipcheck|sipp), mode (conn|calls), run number. Appends a line to
# $dir/results.tsv: tool mode run calls ok failed wall_s caller_user caller_sys resp_user
# resp_sys (CPU in seconds).
measure_one() {
    local tool=$1 mode=$2 run=$3 n rate tag port resp caller_rc=0
    if [ "$mode" = conn ]; then n=$CONN_CALLS rate=$CONN_RATE; else n=$CALLS rate=$RATE; fi
    tag=$tool-$mode-$run
    port=$(free_port)
    mkdir -p "$dir/$tag"
    if [ "$tool" = sipp ]; then
        (cd "$dir/$tag" && exec taskset -c 1 "$SIPP" -sn uas -t l1 -i 127.0.0.1 -p "$port" \
            -tls_cert "$dir/cert.pem" -tls_key "$dir/key.pem" -nostdin -buff_size 4194304 \
            -max_socket "$maxsock" >uas.out 2>uas.err) &
    else
        taskset -c 1 "$SIPCHECK" answer --transport tls --listen "127.0.0.1:$port" \
            --cert "$dir/cert.pem" --key "$dir/key.pem" --no-rtp --quiet --json \
            --max-calls 1000000 >"$dir/$tag/answer.out" 2>"$dir/$tag/answer.err" &
    fi
    resp=$!
    wait_listen "$resp" "$port" || { say "$tag: the responder did not listen"; cat "$dir/$tag"/*.err >&2; exit 1; }
    read -r ru0 rs0 < <(ticks "$resp")
    if [ "$tool" = sipp ]; then
        local t=ln
        [ "$mode" = calls ] && t=l1
        # Bounded from outside too: its -timeout does not end a uac stalled over TLS.
        (cd "$dir/$tag" && exec /usr/bin/time -f '%e %U %S' -o time.txt \
            timeout -s INT -k 10 "$((n / rate + 40))" taskset -c 0 "$SIPP" -sn uac -t "$t" "127.0.0.1:$port" -i 127.0.0.1 \
            -p "$(free_port)" -r "$rate" -rp 1000 -m "$n" -l "$n" -d 0 \
            -tls_cert "$dir/cert.pem" -tls_key "$dir/key.pem" -tls_ca "$dir/ca.pem" \
            -nostdin -buff_size 4194304 -max_socket "$maxsock" -timeout "$((n / rate + 30))s" \
            -trace_stat -stf stat.csv -fd 1 >uac.out 2>uac.err) || caller_rc=$?
    else
        local uas=$n conns=per_ua
        [ "$mode" = calls ] && uas=100 conns=per_role
        BENCH_TARGET="127.0.0.1:$port" BENCH_RATE=$rate BENCH_CALLS=$n BENCH_UAS=$uas \
            BENCH_CONNECTIONS=$conns /usr/bin/time -f '%e %U %S' -o "$dir/$tag/time.txt" \
            taskset -c 0 "$SIPCHECK" run bench/scenarios/tls-caller.yaml --ca "$dir/ca.pem" \
            --json "$dir/$tag/run.json" >"$dir/$tag/run.out" 2>"$dir/$tag/run.err" \
            || caller_rc=$?
    fi
    read -r ru1 rs1 < <(ticks "$resp")
    stop "$resp"
    local ok failed
    if [ "$tool" = sipp ]; then
        read -r ok failed < <(python3 - "$dir/$tag/stat.csv" <<'PY'
import sys
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
row = dict(zip(rows[0], rows[-1]))
print(row["SuccessfulCall(C)"], row["FailedCall(C)"])
PY
        )
    else
        read -r ok failed < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["calls"]; print(c["passed"], c["failed"] + c["not_started"])' "$dir/$tag/run.json")
    fi
    local hz
    hz=$(getconf CLK_TCK)
    # The last line: /usr/bin/time writes "Command exited with non-zero status N" before it.
    read -r wall cu cs < <(tail -1 "$dir/$tag/time.txt")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$mode" "$run" "$n" "$ok" \
        "$failed" "$wall" "$cu" "$cs" \
        "$(awk -v a="$ru0" -v b="$ru1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')" \
        "$(awk -v a="$rs0" -v b="$rs1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')" \
        | tee -a "$dir/results.tsv" >&2
    [ "$caller_rc" -eq 0 ] || say "$tag: the caller exited with $caller_rc"
}

measure() {
    [ -x "$SIPCHECK" ] || { say "no $SIPCHECK (cargo build --release)"; exit 1; }
    build
    dir=$(mktemp -d)
    trap '[ -n "${KEEP:-}" ] && say "kept $dir" || rm -rf "$dir"' EXIT
    certs "$dir"
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    maxsock=$(($(ulimit -n) - 100))
    say "$(version), $("$SIPCHECK" --version)"
    say "tool mode run calls ok failed wall_s caller_user_s caller_sys_s responder_user_s responder_sys_s"
    for run in $(seq "$RUNS"); do
        for mode in $MODES; do
            # Alternate which tool goes first from run to run.
            if [ $((run % 2)) -eq 1 ]; then order="sipcheck sipp"; else order="sipp sipcheck"; fi
            for tool in $order; do measure_one "$tool" "$mode" "$run"; done
        done
    done
    python3 - "$dir/results.tsv" "$CONN_RATE" "$RATE" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
offered = {"conn": int(sys.argv[2]), "calls": int(sys.argv[3])}
what = {"conn": "new TLS connections/s (a connection per call)",
        "calls": "TLS calls/s (one connection)"}
print("| what | tool | offered /s | passed / calls (every run) | achieved /s (median) "
      "| caller CPU per call, user + sys (median) | responder CPU per call, user + sys (median) "
      "| per-core ceiling, caller / responder |")
print("| --- | --- | ---: | --- | ---: | --- | --- | --- |")
for mode in ("conn", "calls"):
    for tool in ("sipcheck", "sipp"):
        rs = [r for r in rows if r[0] == tool and r[1] == mode]
        if not rs:
            continue
        n = [int(r[3]) for r in rs]
        ok = [int(r[4]) for r in rs]
        rate = statistics.median(int(r[4]) / float(r[6]) for r in rs)
        med = lambda i: statistics.median(float(r[i]) / int(r[3]) * 1e6 for r in rs)
        cu, cs, ru, rsys = med(7), med(8), med(9), med(10)
        print(f"| {what[mode]} | {'SIPp' if tool == 'sipp' else 'sipcheck'} | {offered[mode]} "
              f"| {', '.join(f'{a}/{b}' for a, b in zip(ok, n))} | {rate:.0f} "
              f"| {cu:.0f} + {cs:.0f} µs | {ru:.0f} + {rsys:.0f} µs "
              f"| {1e6 / (cu + cs):.0f} / {1e6 / (ru + rsys):.0f} |")
PY
}

case ${1:-all} in
build) build ;;
measure) measure ;;
all) build && measure ;;
*) echo "usage: $0 [build|measure]" >&2; exit 2 ;;
esac
