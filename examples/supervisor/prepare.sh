#!/usr/bin/env bash
# Get the cookbook setup ready: run/ for Supervisor's and the listener's
# files, a virtual environment .venv/ with bottle, gunicorn and supervisor
# from PyPI, and logrelay built in release mode (target/release/logrelay,
# or $CARGO_TARGET_DIR/release/logrelay).
#
#   bash prepare.sh
#
# Environment: PYTHON (default python3) makes the venv; LOGRELAY_BIN, if set,
# names a logrelay binary to use instead, and the build is skipped.
set -euo pipefail
# A relative LOGRELAY_BIN is relative to the caller's directory.
case ${LOGRELAY_BIN:-/} in /*) ;; *) LOGRELAY_BIN=$PWD/$LOGRELAY_BIN ;; esac
cd "$(dirname "$0")"
HERE=$(pwd)
ROOT=$(cd ../.. && pwd)
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$HERE/.venv}
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac

mkdir -p run

REQUIREMENTS=(bottle "gunicorn>=27" "supervisor>=4")
if [ -x "$VENV/bin/supervisord" ] && [ -x "$VENV/bin/gunicorn" ] && "$VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m, bottle
assert int(m.version("gunicorn").split(".")[0]) >= 27
PY
then
    echo "prepare: virtual environment $VENV is ready"
else
    echo "prepare: creating the virtual environment $VENV (bottle, gunicorn, supervisor from PyPI)"
    if ! "$PYTHON" -m venv "$VENV"; then
        echo "prepare: error: '$PYTHON -m venv' failed; on Debian/Ubuntu install python3-venv" >&2
        exit 1
    fi
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "${REQUIREMENTS[@]}"; then
        echo "prepare: error: pip could not install bottle, gunicorn and supervisor from PyPI" >&2
        exit 1
    fi
fi

# The venv imports logrelay's Python package (RelayHandler) from this
# checkout's python/ (a user would `pip install` the logrelay wheel).
"$VENV/bin/python" - "$ROOT/python" <<'PY'
import os, sys, sysconfig
pth = os.path.join(sysconfig.get_paths()["purelib"], "logrelay-checkout.pth")
with open(pth, "w") as f:
    f.write(sys.argv[1] + "\n")
PY

if [ -n "${LOGRELAY_BIN:-}" ]; then
    if [ ! -x "$LOGRELAY_BIN" ]; then
        echo "prepare: error: LOGRELAY_BIN=$LOGRELAY_BIN is not an executable file" >&2
        exit 1
    fi
    echo "prepare: using LOGRELAY_BIN=$LOGRELAY_BIN (not building)"
else
    echo "prepare: building logrelay in release mode (the first build takes several minutes)"
    (cd "$ROOT" && cargo build --release --bin logrelay)
    echo "prepare: logrelay is $TARGET/release/logrelay"
fi
echo "prepare: done; next: bash ensure_app.sh"
