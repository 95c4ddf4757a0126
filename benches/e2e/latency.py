#!/usr/bin/env python3
"""Latency under load: how long a record sent takes to be in the file (issue 23:
"p99 send-to-file latency under load at most 5 ms").

Two parts:

* the probe (``latency.py probe ...``, its own process): sends one record every
  ``--interval`` seconds (10 ms) through a real ``logging.handlers.SocketHandler``
  on its own connection, with a unique marker in the message
  (``latprobe <token> n=<k> ...``), and notes the wall-clock time just before
  each ``logger.info()``.  In the same single-threaded loop it tails the output
  file every ``--poll`` seconds (1 ms): it keeps the file open and reads only
  the new bytes, and follows rotation by inode (when the path names a new inode
  it reads the old file to its end, then the new one from the start), noting
  when each marker's line appears.  SIGUSR1 stops the sending; it then waits
  (up to ``--max-wait``) for the probes still in flight and prints one JSON line:
  every probe's send and seen times.

* ``measure()`` (called by run.py, or ``latency.py run ...``): starts logrelay
  with the given config, waits until it listens, starts the probe and waits
  until its warm-up record is in the file, then runs loadgen.py (raw mode, the
  main scenario's senders); when loadgen exits it stops the probe, waits until
  every load record is in the file, takes logrelay's peak RSS, stops it and runs
  verify.py.  Only probes *sent while loadgen was sending* (from its first byte,
  ``t_start``, to its last, ``t_end``) count as "under load"; the ones sent
  before (while loadgen precomputed its frames) are reported as the idle
  baseline.  A probe that never showed up counts as infinitely late.

Probe lines carry no ``rid=``/``seq=``/``tb=``/`` #``, so verify.py counts them
as foreign lines, which fail only with ``--strict`` (not used here); measure()
checks that the number of foreign lines is exactly the number of probes seen.

Python standard library only.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (benches/e2e/harness.py)

MARK = b"latprobe "

# Issue 23: p99 from send to in the file, under load.
TARGET_MS = 5.0


# --------------------------------------------------------------------------
# The probe process.


class Tail:
    """Follows one output path through rotation by inode, reading only new bytes."""

    def __init__(self, path: str, marker: bytes):
        self.path = path
        self.marker = marker            # b"latprobe <token> n="
        self.files: list[list] = []     # [ino, file, carry]; the last one is current

    def poll(self) -> list[int]:
        """Probe numbers whose line appeared since the last poll."""
        found: list[int] = []
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            ino = None
        if ino is not None and (not self.files or self.files[-1][0] != ino):
            try:
                f = open(self.path, "rb")
            except FileNotFoundError:
                f = None
            if f is not None:
                real = os.fstat(f.fileno()).st_ino
                if self.files and self.files[-1][0] == real:
                    f.close()           # rotated again between stat and open
                else:
                    self.files.append([real, f, b""])
        for entry in list(self.files):
            _, f, carry = entry
            data = f.read()
            if data:
                buf = carry + data
                cut = buf.rfind(b"\n") + 1
                found += self._scan(buf[:cut])
                entry[2] = buf[cut:]
            if entry is not self.files[-1]:
                # A rotated file: its writer moved on before the new inode
                # appeared, so once read to the end it is complete.
                f.close()
                self.files.remove(entry)
        return found

    def _scan(self, buf: bytes) -> list[int]:
        out = []
        m, i = self.marker, buf.find(self.marker)
        while i >= 0:
            j = i + len(m)
            k = j
            while k < len(buf) and 48 <= buf[k] <= 57:
                k += 1
            if k > j:
                out.append(int(buf[j:k]))
            i = buf.find(m, k)
        return out


def probe_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="latency.py probe")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True, help="the output file (followed through rotation)")
    p.add_argument("--token", required=True)
    p.add_argument("--interval", type=float, default=0.010)
    p.add_argument("--poll", type=float, default=0.001)
    p.add_argument("--max-wait", type=float, default=5.0,
                   help="after SIGUSR1, wait this long at most for probes in flight")
    args = p.parse_args(argv)

    stop = []
    signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))
    handler = logging.handlers.SocketHandler(args.host, args.port)
    log = logging.getLogger("latprobe")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    tail = Tail(args.out, MARK + args.token.encode() + b" n=")
    sent: list[float] = []
    seen: dict[int, float] = {}
    ready = False
    sending = True
    deadline = math.inf
    next_send = time.time()
    while True:
        now = time.time()
        if stop and sending:
            sending, deadline = False, now + args.max_wait
        if sending and now >= next_send and (ready or not sent):
            # Until the warm-up probe (n=0) is seen, send nothing more: the
            # connection is being made and the output file created.
            n = len(sent)
            t = time.time()
            log.info("latprobe %s n=%d sent=%.6f", args.token, n, t)
            sent.append(t)
            next_send = max(next_send + args.interval, t + args.interval / 2)
        for n in tail.poll():
            seen.setdefault(n, time.time())
        if not ready and 0 in seen:
            ready = True
            next_send = time.time()
            print("ready", flush=True)
        if not sending and (len(seen) >= len(sent) or now > deadline):
            break
        if not ready and now - sent[0] > 30:
            break
        time.sleep(args.poll)
    handler.close()
    print(json.dumps({"probes": [[n, t, seen.get(n)] for n, t in enumerate(sent)]}), flush=True)
    return 0


# --------------------------------------------------------------------------
# The measurement.


def percentile(sorted_vals: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of sorted values."""
    if not sorted_vals:
        return math.nan
    k = max(0, math.ceil(q / 100 * len(sorted_vals)) - 1)
    return sorted_vals[k]


def stats(lat_ms: list[float]) -> dict:
    v = sorted(lat_ms)
    r = lambda x: None if x is None or math.isnan(x) else (  # noqa: E731
        "inf" if math.isinf(x) else round(x, 2))
    return {"count": len(v), "p50_ms": r(percentile(v, 50)), "p99_ms": r(percentile(v, 99)),
            "max_ms": r(v[-1] if v else math.nan)}


def measure(binary: str, config: dict, records: int, procs: int = 4,
            flush_ms: float = 100.0, verify_args: Optional[list[str]] = None,
            interval: float = 0.010, verbose: bool = False, rate: float = 0.0) -> dict:
    """One latency run; `config` is a logrelay config with @PORT@ and @OUT@ placeholders."""
    e2e = harness.import_e2e()
    rundir = tempfile.mkdtemp(prefix="logrelay-latency-")
    out = os.path.join(rundir, "app.log")
    relay, port = harness.start_logrelay(e2e, binary, config, rundir, out)
    token = os.urandom(4).hex()
    run_id = f"lat{token}"
    result: dict = {"records": records, "procs": procs, "flush_ms": flush_ms,
                    "target_ms": TARGET_MS, "interval_ms": interval * 1000}
    probe = loadgen = None
    try:
        if not harness.wait_listening(e2e, relay, port):
            raise RuntimeError(f"logrelay did not listen (exit {relay.exit_code})")
        probe = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "probe", "--port", str(port),
             "--out", out, "--token", token, "--interval", str(interval)],
            stdout=subprocess.PIPE, text=True)
        r, _, _ = select.select([probe.stdout], [], [], 30)
        if not r or probe.stdout.readline().strip() != "ready":
            raise RuntimeError("the probe's warm-up record never reached the file")
        lg_cmd = [sys.executable, harness.tool("loadgen.py"), "--tcp",
                  f"127.0.0.1:{port}", "--records", str(records), "--procs", str(procs),
                  "--mode", "raw", "--run-id", run_id]
        if rate:
            # A fixed load instead of as fast as the senders go.
            lg_cmd += ["--rate", str(rate)]
        loadgen = subprocess.Popen(lg_cmd, stdout=subprocess.PIPE, text=True,
                                   stderr=None if verbose else subprocess.DEVNULL)
        counter = e2e.TokenCounter(out + "*", f"rid={run_id} p=".encode())
        lg_stdout, _ = loadgen.communicate()     # the probe runs meanwhile
        probe.send_signal(signal.SIGUSR1)
        lg = e2e.last_json_line(lg_stdout) or {}
        if loadgen.returncode != 0:
            raise RuntimeError(f"loadgen failed: {lg.get('errors')}")
        result["records_in_file"] = harness.wait_records_settle(counter, records, quiet_s=15,
                                                                relay=relay)
        pstdout, _ = probe.communicate(timeout=60)
        pr = e2e.last_json_line(pstdout) or {}
        probes = pr.get("probes", [])
        rss = relay.peak_rss_kib()
        if rss:
            result["listener_maxrss_mib"] = round(rss / 1024, 1)
    finally:
        for child in (probe, loadgen):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
        harness.stop(relay, 30)

    t0, t1 = lg.get("t_start") or 0.0, lg.get("t_end") or 0.0
    result["load_seconds"] = round(t1 - t0, 3)
    result["sender_rate"] = lg.get("rate")

    def lat(ps):
        return [((seen - sent) * 1000 if seen is not None else math.inf) for _, sent, seen in ps]
    under = [p for p in probes if t0 <= p[1] <= t1]
    idle = [p for p in probes if p[0] > 0 and p[1] < t0]
    result["probes_sent"] = len(probes)
    result["probes_under_load"] = len(under)
    result["probes_lost"] = sum(1 for p in probes if p[2] is None)
    result["under_load"] = stats(lat(under))
    result["idle"] = stats(lat(idle))
    p99 = result["under_load"]["p99_ms"]
    result["met"] = (isinstance(p99, float) and len(under) >= 100
                     and p99 <= TARGET_MS)
    v = subprocess.run([sys.executable, harness.tool("verify.py"), out + "*",
                        "--run-id", run_id, "--procs", str(procs), "--records", str(records),
                        *(verify_args or [])], capture_output=True, text=True)
    ver = e2e.last_json_line(v.stdout) or {"error": v.stderr[-2000:]}
    seen_probes = sum(1 for p in probes if p[2] is not None)
    result["verify"] = ver
    result["verify_ok"] = bool(ver.get("ok")) and ver.get("foreign_lines") == seen_probes
    if not result["verify_ok"] and verbose:
        print(v.stderr, file=sys.stderr)
    shutil.rmtree(rundir, ignore_errors=True)
    return result


def run_main(argv: list[str]) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(prog="latency.py run",
                                description="one latency run of the main scenario")
    p.add_argument("--binary", default=os.path.join(repo, "target", "release", "logrelay"))
    p.add_argument("--records", type=int, default=500_000)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    import run as bench  # noqa: E402
    cfg = bench.logrelay_config(bench.Row("logrelay"))
    res = measure(os.path.abspath(args.binary), cfg,
                  args.records, args.procs, verify_args=["--check-format", "cookbook"],
                  verbose=args.verbose)
    print(json.dumps(res))
    return 0 if res["met"] and res["verify_ok"] else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        sys.exit(probe_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        sys.exit(run_main(sys.argv[2:]))
    print("usage: latency.py run [--records N] ... | latency.py probe ...", file=sys.stderr)
    sys.exit(2)
