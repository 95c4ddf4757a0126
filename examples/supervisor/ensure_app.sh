#!/usr/bin/env bash
# Make sure Supervisor is running the listener (logrelay) and the web app
# (gunicorn, 4 workers) with supervisor.conf, and wait until both are ready:
# the listener listening on the TCP port or Unix socket that listener.json
# names, the app answering GET /health on the port in webapp.json.
#
#   bash ensure_app.sh
#
# Environment: VENV (default .venv), LOGRELAY_BIN (default the release build),
# ENSURE_TIMEOUT (seconds to wait for readiness, default 60).
set -euo pipefail
# A relative LOGRELAY_BIN is relative to the caller's directory.
case ${LOGRELAY_BIN:-/} in /*) ;; *) LOGRELAY_BIN=$PWD/$LOGRELAY_BIN ;; esac
cd "$(dirname "$0")"
HERE=$(pwd)
ROOT=$(cd ../.. && pwd)
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
export VENV=${VENV:-$HERE/.venv}
export LOGRELAY_BIN=${LOGRELAY_BIN:-$TARGET/release/logrelay}
ENSURE_TIMEOUT=${ENSURE_TIMEOUT:-60}

die() { echo "ensure_app: error: $*" >&2; exit 1; }

[ -x "$VENV/bin/supervisord" ] || die "no Supervisor in $VENV: run 'bash prepare.sh' first"
[ -x "$LOGRELAY_BIN" ] || die "no logrelay binary at $LOGRELAY_BIN: run 'bash prepare.sh' first"
mkdir -p run

# supervisor.conf's [program:app] binds the port that webapp.json names.
APP_PORT=$("$VENV/bin/python" -c 'import json; print(int(json.load(open("webapp.json"))["port"]))') \
    || die "webapp.json has no valid \"port\" (the web app's HTTP port)"
export APP_PORT

# A config error is reported here, clearly, rather than as a crash loop.
"$LOGRELAY_BIN" check --config listener.json >/dev/null \
    || die "listener.json is not valid (see above)"

ctl() { "$VENV/bin/supervisorctl" -c supervisor.conf "$@"; }

if ctl pid >/dev/null 2>&1; then
    echo "ensure_app: Supervisor is running (pid $(ctl pid)); starting anything stopped"
    ctl start all >/dev/null || true
else
    echo "ensure_app: starting Supervisor: $VENV/bin/supervisord -c supervisor.conf"
    "$VENV/bin/supervisord" -c supervisor.conf || die "supervisord did not start (see run/supervisord.log)"
fi

# Wait for both programs, at most ENSURE_TIMEOUT seconds.
"$VENV/bin/python" - "$ENSURE_TIMEOUT" <<'PY' || { ctl status || true; exit 1; }
import json, os, socket, stat, sys, time, urllib.request

timeout = float(sys.argv[1])
deadline = time.monotonic() + timeout
cfg = json.load(open("listener.json"))
app_port = int(json.load(open("webapp.json"))["port"])

def listening_tcp(port):
    """True if something listens on the port (from /proc/net/tcp*; never connects)."""
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                found_table = True
                for row in f:
                    cols = row.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    if not found_table:      # not Linux: connect (the listener sees an empty connection)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    return False

def listener_ready():
    if cfg.get("socket"):
        path = cfg["socket"]
        try:
            return stat.S_ISSOCK(os.stat(path).st_mode), f"Unix socket {path}"
        except OSError:
            return False, f"Unix socket {path}"
    port = int(cfg.get("port") or 9020)
    return listening_tcp(port), f"TCP port {port}"

def app_ready():
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False

ok_l = ok_a = False
while time.monotonic() < deadline:
    ok_l, what = listener_ready()
    ok_a = ok_l and app_ready()
    if ok_l and ok_a:
        print(f"ensure_app: listener on {what} and app on http://127.0.0.1:{app_port}/ are ready")
        sys.exit(0)
    time.sleep(0.2)
what = listener_ready()[1]
print(f"ensure_app: error: not ready after {timeout:.0f} s: listener on {what}: "
      f"{'ok' if ok_l else 'NOT listening'}; app on port {app_port}: "
      f"{'ok' if ok_a else 'NOT answering'} (see run/listener.log, run/app-server.log)",
      file=sys.stderr)
sys.exit(1)
PY
