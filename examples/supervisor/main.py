"""The web application of the cookbook setup: a bottle app run by gunicorn.

Every worker process logs through a logging.handlers.SocketHandler configured
from webapp.json (its "logging" key is a logging.config.dictConfig dict), so
all workers' records travel to one listener -- logrelay -- which writes them
to run/app.log*. Nothing here knows about logrelay: this is plain Python
logging, exactly what an application using the cookbook's Python listener has.

GET /?ident=N&rid=RUN logs RECORDS_PER_REQUEST records for request N of run
RUN (defaults: N = 0, RUN = adhoc). Their messages follow the format that tests/tools/verify.py checks
("rid=RUN p=K seq=N lv=LEVEL lg=LOGGER exc=0|1 ... #crc32"), with K the
record's index within the request, so check.py can prove that every record
arrived exactly once and intact. Every 25th request's last record is an ERROR
with a real traceback. GET /health answers without logging.
"""

import json
import logging
import logging.config
import os
import re
import sys
import zlib
from pathlib import Path

import bottle

HERE = Path(__file__).resolve().parent

with open(HERE / "webapp.json", encoding="utf-8") as f:
    CONFIG = json.load(f)
logging.config.dictConfig(CONFIG["logging"])

RECORDS_PER_REQUEST = 4
TRACEBACK_EVERY = 25          # request N % 25 == 0 logs an ERROR with a traceback
RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
EXC_DETAIL = "card declined by issuer "

request_log = logging.getLogger("webapp.request")
db_log = logging.getLogger("webapp.db")
view_log = logging.getLogger("webapp.views")
payment_log = logging.getLogger("webapp.payments")

app = bottle.Bottle()


class PaymentDeclined(Exception):
    """Raised (and logged with its traceback) by some requests."""


def _charge(detail):
    raise PaymentDeclined(detail)


def _checkout(detail):
    _charge(detail)


def _log_failure(log, msg, args, detail):
    """Raise through two frames and log the exception, as an except block does."""
    try:
        _checkout(detail)
    except PaymentDeclined:
        log(msg, *args, exc_info=True)


def _traceback_prefix():
    """The exc_text a SocketHandler sends for _log_failure, up to the exception message.

    The traceback of every logged PaymentDeclined is this text followed by a
    marker "tb=RUN/K/N/<crc32 of this text>", which lets verify.py check that
    the multi-line traceback arrived whole and under the right record.
    """
    captured = []

    def capture(msg, *args, exc_info):
        captured.append(logging.Formatter().formatException(sys.exc_info()))

    _log_failure(capture, "", (), EXC_DETAIL)
    assert captured[0].endswith(EXC_DETAIL), captured[0]
    return captured[0]


TRACEBACK_PREFIX = _traceback_prefix()
TRACEBACK_CRC = zlib.crc32(TRACEBACK_PREFIX.encode("utf-8"))


def emit(log, level, run_id, k, ident, text, exc=False):
    """Log one record whose message verify.py can check (CRC over everything before ' #')."""
    name = logging.getLevelName(level)
    core = (f"rid={run_id} p={k} seq={ident} lv={name} lg={log.name} exc={int(exc)} "
            f"pid={os.getpid()} {text}")
    crc = zlib.crc32(core.encode("utf-8"))
    if exc:
        marker = f"tb={run_id}/{k}/{ident}/{TRACEBACK_CRC:08x}"
        _log_failure(lambda *a, **kw: log.log(level, *a, **kw),
                     "%s #%08x", (core, crc), EXC_DETAIL + marker)
    else:
        log.log(level, "%s #%08x", core, crc)


@app.route("/health")
def health():
    return {"ok": True, "pid": os.getpid()}


@app.route("/")
def index():
    run_id = bottle.request.query.get("rid", "adhoc")
    ident = bottle.request.query.get("ident", "0")
    if not RUN_ID_RE.match(run_id) or not ident.isdigit():
        bottle.response.status = 400
        return {"error": "expected ?ident=<number>&rid=<run id: letters, digits, _.->"}
    n = int(ident)
    user = "José" if n % 10 == 0 else f"u{n % 997}"   # some non-ASCII on the wire
    emit(request_log, logging.INFO, run_id, 0, n,
         f"GET /?ident={n} user={user} ip=192.0.2.{n % 254 + 1}")
    emit(db_log, logging.DEBUG, run_id, 1, n,
         f"SELECT id, total FROM orders WHERE user_id = $1 rows={n % 50} db_ms={n % 7}.{n % 10}")
    emit(view_log, logging.WARNING if n % 7 == 0 else logging.INFO, run_id, 2, n,
         f"rendered cart.html in {n % 900} ms cpu=37%")
    if n % TRACEBACK_EVERY == 0:
        emit(payment_log, logging.ERROR, run_id, 3, n, f"checkout failed order=o{n}", exc=True)
    else:
        emit(payment_log, logging.INFO, run_id, 3, n, f"checkout ok order=o{n}")
    return {"ident": n, "pid": os.getpid(), "records": RECORDS_PER_REQUEST}
