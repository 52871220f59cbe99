#!/usr/bin/env bash
# New TLS connections per second: a Kamailio with its tls module on a loopback port (the
# tests' tests/peers/kamailio.cfg, a certificate made here with openssl), and BENCH_UAS
# (default 1000) user agents of `sipcheck run bench/scenarios/tls-register.yaml`, each
# registering over a TLS connection of its own. Prints the time until every UA is registered
# and the rate. Stops what it started, by PID.
#
#   bench/tls-rate.sh [SIPCHECK_BINARY]      (default target/release/sipcheck)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIPCHECK=${1:-target/release/sipcheck}
UAS=${BENCH_UAS:-1000}
PATH=$PATH:/usr/sbin
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tls_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
openssl req -x509 -nodes "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 1 \
    -subj /CN=bench-ca 2>/dev/null
openssl req -nodes "${ec[@]}" -keyout "$dir/key.pem" -out "$dir/cert.csr" -subj /CN=bench 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$dir/cert.ext"
openssl x509 -req -in "$dir/cert.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -out "$dir/cert.pem" -days 1 -extfile "$dir/cert.ext" 2>/dev/null
printf '[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\nprivate_key = %s\ncertificate = %s\n' \
    "$dir/key.pem" "$dir/cert.pem" > "$dir/tls.cfg"
kamailio -DD -E -f tests/peers/kamailio.cfg -l "udp:127.0.0.1:$port" -l "tcp:127.0.0.1:$port" \
    -l "tls:127.0.0.1:$tls_port" -Y "$dir" -w "$dir" -m 512 -A "CTL_SOCKET=\"unix:$dir/ctl\"" \
    -A CHILDREN=4 -A WITH_TLS -A "TLS_CONFIG=\"$dir/tls.cfg\"" >"$dir/kamailio.log" 2>&1 &
kam=$!
trap 'kill -INT "${run:-}" 2>/dev/null || true; kill "$kam" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"' EXIT
for _ in $(seq 100); do [ -S "$dir/ctl" ] && break; sleep 0.1; done
count() {
    kamcmd -s "unix:$dir/ctl" stats.get_statistics usrloc: 2>/dev/null \
        | sed -n 's/.*registered_users = //p' | head -1 | grep . || echo 0
}
start=$(date +%s.%N)
BENCH_REGISTRAR="127.0.0.1:$tls_port" BENCH_UAS=$UAS "$SIPCHECK" run bench/scenarios/tls-register.yaml \
    --ca "$dir/ca.pem" --json "$dir/summary.json" >"$dir/run.log" 2>&1 &
run=$!
deadline=$(( $(date +%s) + 120 ))
while [ "$(count)" -lt "$UAS" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.05; done
end=$(date +%s.%N)
n=$(count)
# CPU seconds so far: Kamailio (all its processes) and sipcheck.
cpu() {
    local hz pid total=0
    hz=$(getconf CLK_TCK)
    for pid in "$@"; do
        total=$(( total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
    done
    awk -v t="$total" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'
}
kam_cpu=$(cpu "$kam" $(pgrep -P "$kam" || true))
run_cpu=$(cpu "$run")
echo "CPU: kamailio ${kam_cpu} s, sipcheck ${run_cpu} s"
kill -INT "$run"; wait "$run" || true
python3 - "$start" "$end" "$n" "$dir/summary.json" <<'PY'
import json, sys
start, end, n, path = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
h = json.load(open(path))["metrics"]["tls_handshake"]
print(f"{n} UAs registered over their own TLS connection in {end - start:.2f} s: "
      f"{n / (end - start):.0f} connections/s (with a digest-authenticated REGISTER each); "
      f"tls_handshake count {h['count']} p50 {h['p50_ms']} ms p99 {h['p99_ms']} ms")
PY
