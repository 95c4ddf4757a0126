#!/usr/bin/env python3
"""RelayHandler vs SocketHandler, same run, same machine (issue 18).

    python3 benches/python/bench_emit.py [--bin target/release/logrelay] [--records 20000]

1. emit() cost per record, p50 and p99, each handler calling emit() on
   fresh records in a loop, paced at --rate records/s (default 5,000: a
   busy application, not a flood): with logrelay up, then with nothing
   listening (logrelay down). SocketHandler's emit pickles and sends on the
   caller's thread (and, while down, tries to connect); RelayHandler's
   pickles and queues.
2. records/s from one process: --records * 5 records through a logger as
   fast as the loop goes, until the last is written by logrelay (SocketHandler:
   sent; RelayHandler: confirmed), best of 3 alternating runs.

Not a timed test: numbers depend on the machine and its load; compare the
two handlers within one run.
"""

import argparse
import logging
import logging.handlers
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
from logrelay import RelayHandler  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_logrelay(binary, port, out):
    cfg = os.path.join(out, "listener.json")
    with open(cfg, "w") as f:
        f.write('{"inputs": {"app": {"type": "tcp", "address": "127.0.0.1:%d"}},'
                ' "outputs": {"f": {"type": "file", "path": "%s/out.log",'
                ' "format": "%%(levelname)s %%(name)s %%(message)s"}}}' % (port, out))
    p = subprocess.Popen([binary, "--config", cfg], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.05)
    sys.exit("logrelay did not start")


def records(n):
    return [logging.LogRecord("bench.emit", logging.INFO, __file__, 42,
                              "request %d served in %.1f ms for %s", (i, 12.5, "user-%d" % (i % 97)), None)
            for i in range(n)]


def emit_costs(handler, recs, rate):
    costs = []
    t0 = time.perf_counter()
    clock = time.perf_counter_ns
    for i, r in enumerate(recs):
        d = t0 + i / rate - time.perf_counter()
        if d > 0:
            time.sleep(d)
        a = clock()
        handler.emit(r)
        costs.append(clock() - a)
    costs.sort()
    return costs[len(costs) // 2] / 1000, costs[int(len(costs) * 0.99)] / 1000


def make(kind, port):
    if kind == "SocketHandler":
        return logging.handlers.SocketHandler("127.0.0.1", port)
    return RelayHandler("127.0.0.1", port, close_timeout=30)


def throughput(kind, port, n):
    h = make(kind, port)
    log = logging.getLogger("bench.%s.%d" % (kind, time.monotonic_ns()))
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(h)
    t0 = time.perf_counter()
    for i in range(n):
        log.info("request %d served in %.1f ms for %s", i, 12.5, "user")
    if kind == "RelayHandler":
        assert h.flush(60)
    took = time.perf_counter() - t0
    h.close()
    return n / took


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_bin = os.path.join(ROOT, "target", "release", "logrelay")
    if not os.path.exists(default_bin):
        default_bin = os.path.join(ROOT, "target", "debug", "logrelay")
    ap.add_argument("--bin", default=default_bin)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=5000)
    args = ap.parse_args()
    out = tempfile.mkdtemp(prefix="bench-emit-")
    port = free_port()
    relay = start_logrelay(args.bin, port, out)
    kinds = ["SocketHandler", "RelayHandler"]
    rows = []
    try:
        print("python %s, logrelay %s" % (sys.version.split()[0], args.bin), flush=True)
        for state in ("up", "down"):
            if state == "down":
                relay.terminate()
                relay.wait()
            for kind in kinds:
                h = make(kind, port)
                p50, p99 = emit_costs(h, records(args.records), args.rate)
                if kind == "RelayHandler":
                    h.close_timeout = 0.1
                    sys.stderr = open(os.devnull, "w")  # "... lost" at close, expected while down
                    h.close()
                    sys.stderr = sys.__stderr__
                else:
                    h.close()
                rows.append((state, kind, p50, p99))
                print("emit() logrelay %-4s %-13s p50 %7.1f us  p99 %7.1f us" % (state, kind, p50, p99), flush=True)
        relay = start_logrelay(args.bin, port, out)
        best = {k: 0.0 for k in kinds}
        for _ in range(3):
            for kind in kinds:
                best[kind] = max(best[kind], throughput(kind, port, args.records * 5))
        for kind in kinds:
            print("records/s one process %-13s %9.0f" % (kind, best[kind]), flush=True)
        print("RelayHandler / SocketHandler records/s: %.2fx" % (best["RelayHandler"] / best["SocketHandler"]))
    finally:
        relay.terminate()
        relay.wait()


if __name__ == "__main__":
    main()
