#!/usr/bin/env bash
# The main job at this stage: start a Kamailio registrar (digest auth, password "pw" + user)
# on a loopback port, probe it with sipcheck (OPTIONS, REGISTER, unregister), stop it by PID.
#
# Needs: kamailio (Debian package), a built sipcheck (cargo build --release, or it builds one).
# Sends traffic to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-5860}
USER_NAME=${USER_NAME:-1001}
command -v kamailio >/dev/null || { echo "demo: kamailio is not installed (apt-get install kamailio)" >&2; exit 2; }
BIN=${SIPCHECK:-target/release/sipcheck}
[ -x "$BIN" ] || cargo build --release --locked --quiet

RUNDIR=$(mktemp -d)
kamailio -DD -E -f tests/peers/kamailio.cfg -l "udp:127.0.0.1:$PORT" -l "tcp:127.0.0.1:$PORT" \
    -Y "$RUNDIR" -w "$RUNDIR" -m 64 -A "CTL_SOCKET=\"unix:$RUNDIR/ctl\"" 2>"$RUNDIR/kamailio.log" &
KAM=$!
cleanup() { kill "$KAM" 2>/dev/null || true; wait "$KAM" 2>/dev/null || true; rm -rf "$RUNDIR"; }
trap cleanup EXIT

# Wait until Kamailio answers OPTIONS (bounded: 50 tries, 100 ms T1 each).
for _ in $(seq 1 50); do
    if "$BIN" options "sip:127.0.0.1:$PORT" --t1 20ms >/dev/null 2>&1; then break; fi
    sleep 0.1
done

set -x
"$BIN" options "sip:127.0.0.1:$PORT"
SIP_PASSWORD="pw$USER_NAME" "$BIN" register --server "127.0.0.1:$PORT" --user "$USER_NAME" --expires 60 --unregister
