"""Exercise the web application: GET /?ident=N&rid=RUN for N = 0 .. requests-1.

Each request makes one gunicorn worker log main.RECORDS_PER_REQUEST records
(tagged with the run id and the request number) through its SocketHandler
to the listener. Run it with the virtual environment's Python:

    .venv/bin/python client.py                     # 1000 requests, a new run id
    .venv/bin/python client.py --requests 3000 --run-id demo1

The last line on stdout is JSON: run id, requests sent / ok / failed, the
number of records the app logged, and how many requests each worker (pid)
served. Exit status 0 only if every request succeeded.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORDS_PER_REQUEST = 4     # keep in step with main.py


def fetch(base, run_id, ident, timeout):
    """One request; returns the pid of the worker that served it."""
    url = f"{base}/?ident={ident}&rid={run_id}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = json.loads(resp.read())
    if body.get("ident") != ident:
        raise RuntimeError(f"unexpected answer {body!r}")
    return body["pid"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000, help="number of requests (default 1000)")
    ap.add_argument("--run-id", default=time.strftime("run-%Y%m%d-%H%M%S"),
                    help="tag for this run's records (default: run-<date>-<time>)")
    ap.add_argument("--threads", type=int, default=8, help="concurrent requests (default 8)")
    ap.add_argument("--timeout", type=float, default=15.0, help="per-request timeout, seconds")
    ap.add_argument("--config", default=str(HERE / "webapp.json"),
                    help="webapp.json, for the app's HTTP port")
    args = ap.parse_args(argv)

    with open(args.config, encoding="utf-8") as f:
        port = json.load(f)["port"]
    base = f"http://127.0.0.1:{port}"
    pids, failures = Counter(), []
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        futures = {pool.submit(fetch, base, args.run_id, i, args.timeout): i
                   for i in range(args.requests)}
        for fut in as_completed(futures):
            try:
                pids[fut.result()] += 1
            except (OSError, urllib.error.URLError, RuntimeError, ValueError) as exc:
                failures.append(f"ident={futures[fut]}: {exc}")
    elapsed = time.monotonic() - t0
    for line in failures[:10]:
        print(f"client: failed: {line}", file=sys.stderr)
    ok = args.requests - len(failures)
    print(f"client: {ok}/{args.requests} requests ok in {elapsed:.1f} s "
          f"({ok / elapsed if elapsed else 0:.0f}/s), served by {len(pids)} worker(s); "
          f"{ok * RECORDS_PER_REQUEST} records logged with run id {args.run_id}", file=sys.stderr)
    print(json.dumps({
        "run_id": args.run_id, "requests": args.requests, "ok": ok, "failed": len(failures),
        "records": ok * RECORDS_PER_REQUEST, "records_per_request": RECORDS_PER_REQUEST,
        "seconds": round(elapsed, 2), "workers": {str(p): n for p, n in sorted(pids.items())},
    }))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
