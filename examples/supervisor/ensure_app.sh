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
"$VENV/bin/python" - "$ENSURE_TIMEOUT" "$VENV/bin/supervisorctl" <<'PY' || { ctl status || true; exit 1; }
import json, os, socket, stat, subprocess, sys, time, urllib.request

timeout, supervisorctl = float(sys.argv[1]), sys.argv[2]
deadline = time.monotonic() + timeout
cfg = json.load(open("listener.json"))
app_port = int(json.load(open("webapp.json"))["port"])
LINUX = os.path.exists("/proc/net/tcp")

def programs():
    """{name: (state, pid)} from supervisorctl status."""
    try:
        out = subprocess.run([supervisorctl, "-c", "supervisor.conf", "status"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    result = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 2:
            pid = int(cols[3].rstrip(",")) if len(cols) > 3 and cols[2] == "pid" else None
            result[cols[0]] = (cols[1], pid)
    return result

def socket_inodes(pid):
    """Inodes of the sockets the process has open."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes

def listening_inodes(port=None, path=None):
    """Inodes of listening TCP sockets on the port, or of the Unix socket bound to the path."""
    found = set()
    if port is not None:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                rows = open(table).read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                c = row.split()
                if c[3] == "0A" and int(c[1].rsplit(":", 1)[1], 16) == port:
                    found.add(c[9])
    else:
        want = os.path.abspath(path)
        for row in open("/proc/net/unix").read().splitlines()[1:]:
            c = row.split()
            if len(c) >= 8 and os.path.abspath(c[7]) == want:
                found.add(c[6])
    return found

def listener_ready(pid):
    """Is the listener process itself listening where listener.json says?"""
    if cfg.get("socket"):
        path, port, what = cfg["socket"], None, f"Unix socket {cfg['socket']}"
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                return False, what
        except OSError:
            return False, what
    else:
        path, port = None, int(cfg.get("port") or 9020)
        what = f"TCP port {port}"
    if not LINUX:            # no /proc: trust Supervisor's RUNNING and the socket file
        return pid is not None, what
    return bool(pid and listening_inodes(port, path) & socket_inodes(pid)), what

def app_ready():
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False

ok_l = ok_a = False
what = "?"
while time.monotonic() < deadline:
    progs = programs()
    fatal = [name for name, (state, _) in progs.items() if state == "FATAL"]
    if fatal:
        print(f"ensure_app: error: Supervisor could not keep {', '.join(fatal)} running "
              f"(see run/listener.log, run/app-server.log, run/supervisord.log)", file=sys.stderr)
        sys.exit(1)
    state, pid = progs.get("listener", ("?", None))
    ok_l, what = listener_ready(pid if state == "RUNNING" else None)
    ok_a = ok_l and progs.get("app", ("?",))[0] == "RUNNING" and app_ready()
    if ok_l and ok_a:
        print(f"ensure_app: listener (pid {pid}) on {what} and app on "
              f"http://127.0.0.1:{app_port}/ are ready")
        sys.exit(0)
    time.sleep(0.3)
print(f"ensure_app: error: not ready after {timeout:.0f} s: listener on {what}: "
      f"{'ok' if ok_l else 'NOT listening'}; app on port {app_port}: "
      f"{'ok' if ok_a else 'NOT answering'} (see run/listener.log, run/app-server.log)",
      file=sys.stderr)
sys.exit(1)
PY
