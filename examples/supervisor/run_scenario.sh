#!/usr/bin/env bash
# The cookbook's production setup, end to end, with logrelay as the listener.
#
#   bash examples/supervisor/run_scenario.sh
#
# 1. prepare.sh (venv with bottle, gunicorn, supervisor; logrelay release build)
# 2. a fresh copy of this directory's setup in run/scenario/ (the tracked files
#    are never modified), with free ports from 9030-9099 written into
#    listener.json and webapp.json
# 3. ensure_app.sh: supervisord runs logrelay and gunicorn (4 workers)
# 4. client.py sends REQUESTS requests over TCP; check.py waits until every
#    record is in run/app.log* and checks each is there exactly once
# 5. switch to a Unix domain socket as the cookbook describes: listener.json
#    gets a "socket" key (logrelay reloads it live), webapp.json gets host =
#    the socket path and port = null, the app is restarted
# 6. client.py + check.py again, with a new run id
# 7. client.py again (2 * REQUESTS), with `supervisorctl restart listener`
#    RESTART_AFTER seconds (default 3) into it: the cookbook's plain SocketHandler loses
#    records (printed, not a failure)
# 8. webapp.json's handler becomes logrelay.RelayHandler (the app restarted),
#    and the same again: every record must arrive exactly once
# 9. supervisorctl shutdown; the runs checked again after the final flush
# Exit status 0 only if everything checked out.
#
# Environment: REQUESTS (per run, default 3000), LOGRELAY_BIN (a logrelay binary
# to use instead of the release build, e.g. target/debug/logrelay),
# WAIT_SECONDS (per wait, default 120), SWITCH (live: rely on logrelay's hot
# reload, the default; restart: restart the listener program instead),
# KEEP_RUNNING=1 (on failure, leave Supervisor running for a look around).
set -euo pipefail
# A relative LOGRELAY_BIN is relative to the caller's directory.
case ${LOGRELAY_BIN:-/} in /*) ;; *) LOGRELAY_BIN=$PWD/$LOGRELAY_BIN ;; esac
cd "$(dirname "$0")"
EX=$(pwd)
ROOT=$(cd ../.. && pwd)
REQUESTS=${REQUESTS:-3000}
WAIT_SECONDS=${WAIT_SECONDS:-120}
SWITCH=${SWITCH:-live}
S=$EX/run/scenario
T0=$(date +%s)

say() { echo "scenario: $*"; }
die() { echo "scenario: FAILED: $*" >&2; exit 1; }
case $SWITCH in live|restart) ;; *) die "SWITCH must be live or restart, not '$SWITCH'" ;; esac
case $REQUESTS in ''|*[!0-9]*) die "REQUESTS must be a number" ;; esac

# ---------------------------------------------------------------- 1. prepare
LOGRELAY_BIN=${LOGRELAY_BIN:-} bash "$EX/prepare.sh"
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
export VENV=$EX/.venv
export LOGRELAY_BIN=${LOGRELAY_BIN:-$TARGET/release/logrelay}
PY=$VENV/bin/python
VERIFY=$ROOT/tests/tools/verify.py
CHECK_TIME=${CHECK_TIME:-1}
# run_check LABEL [ARGS...]: check.py on run/app.log* for run LABEL: its run id,
# its size, and (unless CHECK_TIME=0) the time it started, which every
# asctime must follow.
run_check() {
    local label=$1 since=()
    shift
    if [ "$CHECK_TIME" = 1 ]; then since=(--since "${SINCE[$label]}"); fi
    "$PY" "$S/check.py" "$S/run/app.log*" --run-id "${RID[$label]}" --requests "${REQ[$label]:-$REQUESTS}" \
        --verify "$VERIFY" ${since[@]+"${since[@]}"} "$@"
}
say "logrelay: $LOGRELAY_BIN ($("$LOGRELAY_BIN" --version))"

ctl() { timeout 60 "$VENV/bin/supervisorctl" -c "$S/supervisor.conf" "$@"; }

# Stop the supervisord of run/scenario (ours, by the pid in its pidfile), bounded.
stop_supervisor() {
    local pidfile=$S/run/supervisord.pid pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    ctl shutdown >/dev/null 2>&1 || true
    for i in $(seq 1 "$((WAIT_SECONDS * 5))"); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    echo "scenario: supervisord $pid did not stop in ${WAIT_SECONDS} s; killing it and its children" >&2
    pkill -KILL -P "$pid" 2>/dev/null || true     # logrelay and the gunicorn master
    kill -KILL "$pid" 2>/dev/null || true
    return 1
}

FINISHED=0
cleanup() {
    local rc=$?
    if [ "$FINISHED" != 1 ]; then
        if [ "${KEEP_RUNNING:-0}" = 1 ]; then
            echo "scenario: KEEP_RUNNING=1: Supervisor left running in $S" >&2
        else
            stop_supervisor || true
        fi
        for f in listener.log app-server.log supervisord.log; do
            if [ -s "$S/run/$f" ]; then
                echo "---- last lines of $S/run/$f" >&2
                tail -n 25 "$S/run/$f" >&2
            fi
        done
        echo "scenario: FAILED (exit status $rc) after $(( $(date +%s) - T0 )) s; files kept in $S" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------- 2. a fresh copy
stop_supervisor || true       # a scenario left running by KEEP_RUNNING=1 or a kill
rm -rf "$S"
mkdir -p "$S/run"
cp "$EX"/{supervisor.conf,ensure_app.sh,main.py,client.py,check.py,listener.json,webapp.json} "$S/"
sock_path=$S/run/listener.sock
[ "${#sock_path}" -lt 100 ] || die "the scenario directory's path is too long for a Unix socket ($sock_path)"

# Two free ports in 9030-9099: one for the listener, one for the app.
read -r LISTEN_PORT APP_PORT < <("$PY" - <<'PY'
import random, socket
ports = list(range(9030, 9100))
random.shuffle(ports)
free = []
for p in ports:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
    free.append(p)
    if len(free) == 2:
        break
print(*free)
PY
)
[ -n "${APP_PORT:-}" ] || die "no two free ports in 9030-9099"

# Edit a JSON file the way an editor does: write a new file, rename it over.
edit_json() {   # edit_json FILE PYTHON-STATEMENTS-ON-d
    "$PY" - "$1" "$2" <<'PY'
import json, os, sys
path, code = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as f:
    d = json.load(f)
exec(code, {"d": d})
with open(path + ".new", "w", encoding="utf-8") as f:
    json.dump(d, f, indent=4)
    f.write("\n")
os.replace(path + ".new", path)
PY
}
# backupCount 1000 instead of the cookbook's 200: the four runs write more
# than 200 rotated files, and the final re-check needs every one of them.
edit_json "$S/listener.json" "d['port'] = $LISTEN_PORT; d['logging']['handlers']['file']['backupCount'] = 1000"
edit_json "$S/webapp.json" "d['port'] = $APP_PORT; h = d['logging']['handlers']['socket']; h['host'] = '127.0.0.1'; h['port'] = $LISTEN_PORT"
say "setup copied to $S; listener on TCP 127.0.0.1:$LISTEN_PORT, app on http://127.0.0.1:$APP_PORT/"

# ------------------------------------------------------------ 3. start
ENSURE_TIMEOUT=$WAIT_SECONDS bash "$S/ensure_app.sh"
ctl status || true

# ------------------------------------------------------- 4. / 6. one run
declare -A SENT FOUND SINCE RID REQ
run_once() {   # run_once LABEL RUN_ID
    local label=$1 rid=$2 out
    RID[$label]=$rid
    SINCE[$label]=$(date +%s)
    say "[$label] client.py: $REQUESTS requests, run id $rid"
    out=$(timeout "$WAIT_SECONDS" "$PY" "$S/client.py" --config "$S/webapp.json" \
            --requests "$REQUESTS" --run-id "$rid") || die "[$label] client.py failed (exit $?)"
    SENT[$label]=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["records"])' "$out")
    say "[$label] waiting (at most $WAIT_SECONDS s) for ${SENT[$label]} records in run/app.log*"
    out=$(run_check "$label" --wait "$WAIT_SECONDS") || die "[$label] check failed: $out"
    FOUND[$label]=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["found"])' "$out")
}

run_once tcp "tcp-$(date +%H%M%S)-$$"

# --------------------------------------------- 5. switch to the Unix socket
say "switching to the Unix domain socket: listener.json gets \"socket\": \"run/listener.sock\""
pid_before=$(ctl pid listener)
edit_json "$S/listener.json" "d['socket'] = 'run/listener.sock'"
"$LOGRELAY_BIN" check --config "$S/listener.json" >/dev/null || die "the edited listener.json does not validate"
if [ "$SWITCH" = restart ]; then
    say "SWITCH=restart: restarting the listener program"
    ctl restart listener
fi
# Wait for the socket to appear and the TCP port to close (a removed input
# stops accepting at once).
"$PY" - "$sock_path" "$LISTEN_PORT" "$WAIT_SECONDS" <<'PY' || die "the listener did not switch to the Unix socket (see run/listener.log)"
import os, stat, sys, time
path, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def tcp_listening():
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            c = row.split()
            if c[3] == "0A" and int(c[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False
t0 = time.monotonic()
while time.monotonic() - t0 < timeout:
    try:
        sock = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        sock = False
    if sock and not tcp_listening():
        print(f"scenario: listener switched: {path} is a socket and TCP port {port} is closed "
              f"({time.monotonic() - t0:.1f} s)")
        sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
PY
if [ "$SWITCH" = live ]; then
    pid_after=$(ctl pid listener)
    [ "$pid_after" = "$pid_before" ] \
        || die "the listener's pid changed ($pid_before -> $pid_after): it was restarted, not reloaded"
    say "logrelay (pid $pid_after) reloaded listener.json live, without a restart (run/listener.log):"
    grep -i 'reload' "$S/run/listener.log" | sed 's/^/    /' || true
fi
say "webapp.json: host = the socket path, port = null; restarting the app"
edit_json "$S/webapp.json" "h = d['logging']['handlers']['socket']; h['host'] = 'run/listener.sock'; h['port'] = None"
ctl restart app
ENSURE_TIMEOUT=$WAIT_SECONDS bash "$S/ensure_app.sh"

run_once unix "unix-$(date +%H%M%S)-$$"

# ---------------------------- 7. / 8. the listener restarted under load
# supervisorctl restart listener while client.py runs: first with the
# cookbook's plain SocketHandler (its loss is printed), then with
# logrelay.RelayHandler in webapp.json, which must lose nothing.
restart_under_load() {   # restart_under_load LABEL RUN_ID
    local label=$1 rid=$2 client out
    RID[$label]=$rid
    SINCE[$label]=$(date +%s)
    # Twice the requests: logrelay's SIGTERM drain reads busy connections
    # for up to shutdown_timeout_ms (5 s) before it exits, and the outage
    # must fall inside the run.
    REQ[$label]=$((REQUESTS * 2))
    say "[$label] client.py: ${REQ[$label]} requests, run id $rid; supervisorctl restart listener after ${RESTART_AFTER:-3} s"
    timeout "$WAIT_SECONDS" "$PY" "$S/client.py" --config "$S/webapp.json" \
        --requests "${REQ[$label]}" --run-id "$rid" > "$S/run/client-$label.json" &
    client=$!
    sleep "${RESTART_AFTER:-3}"
    ctl restart listener
    wait "$client" || die "[$label] client.py failed"
    SENT[$label]=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["records"])' "$S/run/client-$label.json")
}
restart_under_load restart-socket "rs-$(date +%H%M%S)-$$"
out=$(run_check restart-socket --wait 15) || true
SOCKET_LOST=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1].splitlines()[-1]).get("missing", "?"))' "$out")
say "[restart-socket] plain SocketHandler lost $SOCKET_LOST of ${SENT[restart-socket]} records across the listener restart"

say "webapp.json: handler class = logrelay.RelayHandler; restarting the app"
edit_json "$S/webapp.json" "h = d['logging']['handlers']['socket']; h['class'] = 'logrelay.RelayHandler'"
ctl restart app
ENSURE_TIMEOUT=$WAIT_SECONDS bash "$S/ensure_app.sh"
restart_under_load restart-relay "rr-$(date +%H%M%S)-$$"
out=$(run_check restart-relay --wait "$WAIT_SECONDS") \
    || die "[restart-relay] RelayHandler lost or duplicated records across the listener restart: $out"
FOUND[restart-relay]=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1].splitlines()[-1])["found"])' "$out")
say "[restart-relay] RelayHandler: ${FOUND[restart-relay]}/${SENT[restart-relay]} records, each exactly once (SocketHandler lost $SOCKET_LOST)"

# ---------------------------------------------------------- 9. shut down
say "supervisorctl shutdown"
stop_supervisor || die "Supervisor did not shut down cleanly"
grep -q "stopped: listener (exit status 0)" "$S/run/supervisord.log" \
    || die "logrelay did not exit 0 on SIGTERM (see run/supervisord.log, run/listener.log)"
[ ! -e "$sock_path" ] || die "the Unix socket $sock_path is still there after shutdown"
say "re-checking both runs after the shutdown"
for label in tcp unix restart-relay; do
    run_check "$label" >/dev/null \
        || die "run ${RID[$label]} no longer checks out after the shutdown"
done
files=$(ls "$S"/run/app.log* | wc -l)
warnings=$(grep -c -E ' (WARN|ERROR) ' "$S/run/listener.log" || true)

FINISHED=1
say "OK in $(( $(date +%s) - T0 )) s: TCP ${FOUND[tcp]}/${SENT[tcp]} records, Unix socket" \
    "${FOUND[unix]}/${SENT[unix]} records, each exactly once; listener restarted under load:" \
    "RelayHandler ${FOUND[restart-relay]}/${SENT[restart-relay]} records, each exactly once," \
    "plain SocketHandler lost $SOCKET_LOST of ${SENT[restart-socket]}; $files file(s) run/app.log*;" \
    "listener warnings/errors: $warnings; files in $S/run"
