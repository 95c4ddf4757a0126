#!/usr/bin/env bash
# "When one machine is not enough", end to end on loopback:
#
#   host1, host2      logrelays with a TCP input (as beside a gunicorn app),
#                     publishing every record to the stream LOGS (R3)
#   n1, n2, n3        a 3-node NATS JetStream cluster (nats-server)
#   central1, central2  logrelays sharing the durable consumer "central",
#                     each writing rotating files
#
# 200,000 records are sent through real Python SocketHandlers (2 senders
# per host); mid-stream one NATS node and one central logrelay are killed
# with SIGKILL and restarted. Then check.py waits until every record is in
# the central files (duplicates are allowed: at-least-once). Exit 0 only if
# none is missing.
#
# Environment: LOGRELAY_BIN (default target/release/logrelay, built if
# missing), RECORDS (total, default 200000), WAIT_SECONDS (default 300),
# KEEP=1 (leave run/ in place; it is always left on failure).
set -euo pipefail
case ${LOGRELAY_BIN:-/} in /*) ;; *) LOGRELAY_BIN=$PWD/$LOGRELAY_BIN ;; esac
cd "$(dirname "$0")"
EX=$(pwd)
ROOT=$(cd ../.. && pwd)
RECORDS=${RECORDS:-200000}
WAIT_SECONDS=${WAIT_SECONDS:-300}
R=$EX/run
say() { echo "scale-out: $*"; }
die() { echo "scale-out: FAILED: $*" >&2; exit 1; }

command -v nats-server >/dev/null || die "nats-server is not installed (apt-get install nats-server)"
if [ -z "${LOGRELAY_BIN:-}" ]; then
    LOGRELAY_BIN=$ROOT/target/release/logrelay
    [ -x "$LOGRELAY_BIN" ] || (cd "$ROOT" && cargo build --release)
fi
[ -x "$LOGRELAY_BIN" ] || die "no logrelay binary at $LOGRELAY_BIN"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in $(cat "$R"/*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
rm -rf "$R"
mkdir -p "$R"

# Free loopback ports: 3 client, 3 route, 2 host inputs, 4 metrics.
read -r -a P <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(12)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
SERVERS="[\"nats://127.0.0.1:${P[0]}\", \"nats://127.0.0.1:${P[1]}\", \"nats://127.0.0.1:${P[2]}\"]"
ROUTES=(nats://127.0.0.1:${P[3]} nats://127.0.0.1:${P[4]} nats://127.0.0.1:${P[5]})

start_node() { # i
    local i=$1 routes=()
    for j in 0 1 2; do [ "$j" = "$i" ] || routes+=("${ROUTES[$j]}"); done
    nats-server -js -a 127.0.0.1 -p "${P[$i]}" -n "n$((i + 1))" -sd "$R/n$((i + 1))/store" \
        --cluster_name logs --cluster "${ROUTES[$i]}" --routes "$(IFS=,; echo "${routes[*]}")" \
        >>"$R/n$((i + 1)).log" 2>&1 &
    echo $! >"$R/n$((i + 1)).pid"
}

render() { # template out port metrics
    sed -e "s|@SERVERS@|$SERVERS|" -e "s|@PORT@|$3|" -e "s|@METRICS@|$4|" \
        -e "s|@ACK_WAIT_MS@|${ACK_WAIT_MS:-10000}|" "$EX/$1" >"$2"
}

start_relay() { # name
    local name=$1
    (cd "$R/$name" && exec "$LOGRELAY_BIN" --config listener.json >>"$R/$name.log" 2>&1) &
    echo $! >"$R/$name.pid"
}

wait_log() { # file needle seconds
    local t=0
    until grep -q "$2" "$1" 2>/dev/null; do
        sleep 0.2; t=$((t + 1))
        [ $t -lt $(($3 * 5)) ] || die "no '$2' in $1 after $3 s"
    done
}

metric() { # port name
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(sum(int(float(l.split()[-1])) for l in body.splitlines() if l.startswith(sys.argv[2] + "{")))
PY
}

say "3-node JetStream cluster on ${P[0]}, ${P[1]}, ${P[2]}"
for i in 0 1 2; do mkdir -p "$R/n$((i + 1))"; start_node $i; done
for i in 1 2 3; do wait_log "$R/n$i.log" "Server is ready" 20; done

for i in 1 2; do
    mkdir -p "$R/host$i" "$R/central$i"
    render host.json "$R/host$i/listener.json" "${P[$((5 + i))]}" "${P[$((7 + i))]}"
    render central.json "$R/central$i/listener.json" 0 "${P[$((9 + i))]}"
    start_relay host$i
    start_relay central$i
done
for n in host1 host2 central1 central2; do wait_log "$R/$n.log" "Listening" 30; done
wait_log "$R/host1.log" "JetStream stream" 60

PER=$((RECORDS / 4))
T0=$(date +%s.%N)
say "sending $RECORDS records through 4 SocketHandlers (2 per host)"
SENDERS=()
for i in 1 2; do
    for k in a b; do
        python3 "$EX/send.py" "${P[$((5 + i))]}" "$PER" "h$i$k" &
        SENDERS+=($!)
    done
done

# Mid-stream: once central2 has written something, SIGKILL node n2 and
# central2, and bring both back.
t=0
until [ "$(cat "$R"/central2/logs/app.log* 2>/dev/null | wc -l)" -gt 5000 ]; do
    sleep 0.1; t=$((t + 1)); [ $t -lt 600 ] || die "central2 wrote nothing"
done
say "SIGKILL NATS node n2 and central2"
kill -9 "$(cat "$R/n2.pid")" "$(cat "$R/central2.pid")"
sleep 3
say "restarting n2 and central2"
start_node 1
start_relay central2

for p in "${SENDERS[@]}"; do wait "$p" || die "a sender failed"; done
T1=$(date +%s.%N)
say "senders done in $(python3 -c "print(f'{$T1 - $T0:.1f}')") s"

python3 "$EX/check.py" "$R" h1a:$PER h1b:$PER h2a:$PER h2b:$PER --wait "$WAIT_SECONDS" \
    || die "records missing (logs in $R)"
T2=$(date +%s.%N)
say "all records written $(python3 -c "print(f'{$T2 - $T0:.1f}')") s after the first was sent"
for i in 1 2; do
    say "host$i: published $(metric "${P[$((7 + i))]}" logrelay_nats_published_total)," \
        "acknowledged $(metric "${P[$((7 + i))]}" logrelay_nats_acknowledged_total)"
    say "central$i: acknowledged $(metric "${P[$((9 + i))]}" logrelay_nats_input_acknowledged_total)," \
        "redelivered $(metric "${P[$((9 + i))]}" logrelay_nats_redelivered_total)"
done
for n in host1 host2 central1 central2; do kill -TERM "$(cat "$R/$n.pid")" 2>/dev/null || true; done
sleep 1
cleanup # the nodes too, before their stores are removed
[ "${KEEP:-0}" = 1 ] || rm -rf "$R"
say "OK"
