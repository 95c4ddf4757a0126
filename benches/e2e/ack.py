#!/usr/bin/env python3
"""Acknowledged vs plain senders: the receiving logrelay's CPU per record on
the same workload, same run (issue 19's benchmark).

One measured logrelay (B: a tcp input writing the cookbook format to a file)
receives the same records three ways, alternating, round after round:

- `direct`: N SocketHandler-framed senders straight into B (the main
  scenario);
- `forward`: the senders into a front logrelay whose forward output sends
  plain frames to B (no acknowledgements);
- `ack`: the same front with `ack: true`: B confirms each batch only once
  its file output wrote it, and records each sender's mark in `state_dir`.

B's CPU time (utime + stime from /proc) is read around each round; the
front's is not counted. The senders pre-build real `SocketHandler.makePickle`
frames so they cost little.

    python3 benches/e2e/ack.py [--records 200000] [--senders 4] [--rounds 6]

Prints one line per round and the median ratios ack / direct and
ack / forward (issue 19's target: at most 1.2). Python standard library
only; needs a built binary (target/release/logrelay, or --binary).
"""

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import count_lines, cpu_seconds, frames, free_port  # noqa: E402

FORMAT = "%(asctime)s %(levelname)-8s %(name)s %(message)s"


def send(args) -> None:
    port, blob = args
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(blob)
    s.close()


def minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def start(binary: str, d: str, name: str, config: dict) -> subprocess.Popen:
    os.makedirs(os.path.join(d, name))
    with open(os.path.join(d, name, "listener.json"), "w") as f:
        json.dump(config, f)
    return subprocess.Popen([binary, "--config", "listener.json"], cwd=os.path.join(d, name),
                            stderr=subprocess.DEVNULL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "logrelay"))
    p.add_argument("--only", choices=("direct", "forward", "ack"),
                   help="run one kind only (to profile it: perf record -p <receiver pid>)")
    a = p.parse_args()
    if not os.path.exists(a.binary):
        print(f"no binary at {a.binary}: run `cargo build --release` first", file=sys.stderr)
        return 2
    per = a.records // a.senders
    blobs = [frames(per, s) for s in range(a.senders)]
    b_port, plain_port, ack_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "b", "app.log")
        procs = [
            start(a.binary, d, "b", {
                "inputs": {"in": {"type": "tcp", "address": f"127.0.0.1:{b_port}"}},
                "outputs": {"file": {"type": "file", "path": "app.log", "format": FORMAT}},
            }),
            start(a.binary, d, "front-plain", {
                "inputs": {"in": {"type": "tcp", "address": f"127.0.0.1:{plain_port}"}},
                "outputs": {"b": {"type": "forward", "address": f"127.0.0.1:{b_port}"}},
            }),
            start(a.binary, d, "front-ack", {
                "inputs": {"in": {"type": "tcp", "address": f"127.0.0.1:{ack_port}"}},
                "outputs": {"b": {"type": "forward", "address": f"127.0.0.1:{b_port}", "ack": True}},
            }),
        ]
        b = procs[0]
        try:
            time.sleep(1.0)
            total = 0
            results = {"direct": [], "forward": [], "ack": []}
            with multiprocessing.Pool(a.senders) as pool:
                for r in range(a.rounds):
                    kinds = [("direct", b_port), ("forward", plain_port), ("ack", ack_port)]
                    # Rotate the order each round: no kind always runs first
                    # (or right after another's backlog) on a noisy machine.
                    for kind, port in kinds[r % 3:] + kinds[:r % 3]:
                        if a.only and kind != a.only:
                            continue
                        before = cpu_seconds(b.pid)
                        faults = minor_faults(b.pid)
                        t0 = time.monotonic()
                        pool.map(send, [(port, blob) for blob in blobs])
                        total += per * a.senders
                        while count_lines(out) < total:
                            time.sleep(0.02)
                        wall = time.monotonic() - t0
                        cpu = cpu_seconds(b.pid) - before
                        us = cpu / (per * a.senders) * 1e6
                        results[kind].append(us)
                        faults = minor_faults(b.pid) - faults
                        print(f"round {r + 1} {kind:7}: {us:.2f} us CPU/record at the receiver, "
                              f"{per * a.senders / wall:,.0f} records/s, {faults} page faults", flush=True)
            if a.only:
                return 0
            med = {k: statistics.median(v) for k, v in results.items()}
            print(json.dumps({
                "direct_us_per_record": round(med["direct"], 3),
                "forward_us_per_record": round(med["forward"], 3),
                "ack_us_per_record": round(med["ack"], 3),
                "ack_vs_direct": round(med["ack"] / med["direct"], 3),
                "ack_vs_forward": round(med["ack"] / med["forward"], 3),
                "target": 1.2,
            }))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
