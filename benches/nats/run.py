#!/usr/bin/env python3
"""Benchmark of the nats output and input (issue 20), all in one run.

    python3 benches/nats/run.py [--records N] [--bin PATH] [--repeat K]

Host tier: TCP pickle in (tests/tools/loadgen.py, raw mode, 4 senders)
through one logrelay to
  - a file (the baseline),
  - a nats output on a single node (stream R1),
  - a nats output on a 3-node cluster (stream R3),
  - both again with records packed into messages (`batch_bytes` 65536),
and for each: records/s (first byte sent until the output counted every
record as written: for nats, acknowledged by the stream) and the logrelay
process's CPU (user + system, its CPU-time clock) per record.

Central tier: the R3 stream, filled by the host runs, read by one and
then by two logrelays sharing a new durable consumer, each writing a
file: records/s until every message was acknowledged.

Needs nats-server on PATH and a release build (built if missing). Every
server and logrelay runs on loopback ports it picks, under a temp dir.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOADGEN = os.path.join(ROOT, "tests", "tools", "loadgen.py")
# benches/e2e's helpers: a process's CPU seconds.
sys.path.insert(0, os.path.join(ROOT, "benches", "e2e"))
import harness  # noqa: E402  (benches/e2e/harness.py)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def metric(port, name, label=None):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0
    for line in body.splitlines():
        if line.startswith(name + "{") and (label is None or label in line):
            total += int(float(line.split()[-1]))
    return total


class Cluster:
    def __init__(self, tmp, n):
        self.procs = []
        self.ports = free_ports(n)
        routes = free_ports(n)
        for i, port in enumerate(self.ports):
            args = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-n", f"b{n}{i}",
                    "-sd", os.path.join(tmp, f"nats{n}-{i}")]
            if n > 1:
                others = ",".join(f"nats://127.0.0.1:{r}" for j, r in enumerate(routes) if j != i)
                args += ["--cluster_name", f"bench{n}", "--cluster", f"nats://127.0.0.1:{routes[i]}",
                         "--routes", others]
            log = open(os.path.join(tmp, f"nats{n}-{i}.log"), "w")
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=log))
        for port in self.ports:
            wait_port(port)

    def servers(self):
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


class Relay:
    def __init__(self, binary, tmp, name, config):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "listener.json"), "w") as f:
            json.dump(config, f)
        self.log = open(os.path.join(self.dir, "stderr.log"), "w")
        self.proc = subprocess.Popen([binary, "--config", "listener.json"], cwd=self.dir,
                                     stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=dict(os.environ, RUST_LOG="warn"))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def host_row(binary, tmp, label, output, records):
    tcp, metrics = free_ports(2)
    relay = Relay(binary, tmp, label.replace(" ", "_"), {
        "inputs": {"app": {"type": "tcp", "address": f"127.0.0.1:{tcp}"}},
        "outputs": {"out": output},
        "metrics": {"address": f"127.0.0.1:{metrics}"},
    })
    wait_port(tcp)
    wait_port(metrics)
    if output["type"] == "nats":
        # Stream created: one record through first.
        subprocess.run([sys.executable, LOADGEN, "--tcp", f"127.0.0.1:{tcp}", "--records", "1",
                        "--no-check"], check=True, capture_output=True)
        deadline = time.time() + 60
        while metric(metrics, "logrelay_records_written_total") < 1:
            if time.time() > deadline:
                raise SystemExit(f"{label}: the first record was never acknowledged")
            time.sleep(0.05)
    base = metric(metrics, "logrelay_records_written_total")
    cpu0 = harness.cpu_seconds(relay.proc.pid)
    t0 = time.time()
    sent = subprocess.run([sys.executable, LOADGEN, "--tcp", f"127.0.0.1:{tcp}", "--records",
                           str(records), "--procs", "4", "--no-check"],
                          check=True, capture_output=True, text=True)
    # The rate runs from loadgen's first byte sent (its summary's
    # t_start), not from its start: building the frames takes a while.
    t_first = json.loads(sent.stdout.strip().splitlines()[-1]).get("t_start") or t0
    while metric(metrics, "logrelay_records_written_total") < base + records:
        if time.time() - t0 > 300:
            raise SystemExit(f"{label}: not every record was written")
        time.sleep(0.01)
    t1 = time.time()
    cpu = harness.cpu_seconds(relay.proc.pid) - cpu0
    relay.stop()
    return records / (t1 - t_first), cpu / records * 1e6


def central_row(binary, tmp, label, servers, consumer, members, records):
    relays, ports = [], []
    t0 = time.time()
    for i in range(members):
        (m,) = free_ports(1)
        ports.append(m)
        relays.append(Relay(binary, tmp, f"{label}-{i}", {
            "inputs": {"js": {"type": "nats", "servers": servers, "stream": "LOGS", "consumer": consumer}},
            "outputs": {"f": {"type": "file", "path": "out.log"}},
            "metrics": {"address": f"127.0.0.1:{m}"},
        }))
    for m in ports:
        wait_port(m)
    cpu0 = [harness.cpu_seconds(r.proc.pid) for r in relays]
    while True:
        done = sum(metric(m, "logrelay_records_written_total") for m in ports)
        if done >= records:
            break
        if time.time() - t0 > 300:
            raise SystemExit(f"{label}: only {done} of {records} written")
        time.sleep(0.01)
    t1 = time.time()
    cpu = sum(harness.cpu_seconds(r.proc.pid) - c for r, c in zip(relays, cpu0))
    for r in relays:
        r.stop()
    return records / (t1 - t0), cpu / records * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "logrelay"))
    ap.add_argument("--repeat", type=int, default=1, help="host rows: median of K runs")
    a = ap.parse_args()
    if not shutil.which("nats-server"):
        raise SystemExit("nats-server is not installed (apt-get install nats-server)")
    if not os.path.exists(a.bin):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="logrelay-nats-bench-")
    r1 = Cluster(tmp, 1)
    r3 = Cluster(tmp, 3)
    rows = []
    try:
        outputs = [
            ("TCP -> file", {"type": "file", "path": "out.log"}),
            ("TCP -> nats R1", {"type": "nats", "servers": r1.servers(), "stream": "LOGS", "replicas": 1}),
            ("TCP -> nats R3", {"type": "nats", "servers": r3.servers(), "stream": "LOGS", "replicas": 3}),
            ("TCP -> nats R1, batch_bytes 65536", {"type": "nats", "servers": r1.servers(), "stream": "LOGS",
                                                  "replicas": 1, "batch_bytes": 65536}),
            ("TCP -> nats R3, batch_bytes 65536", {"type": "nats", "servers": r3.servers(), "stream": "LOGS",
                                                  "replicas": 3, "batch_bytes": 65536}),
            ("TCP -> nats R3, batch_bytes, msgpack", {"type": "nats", "servers": r3.servers(), "stream": "LOGS",
                                                     "replicas": 3, "batch_bytes": 65536, "encoder": "msgpack"}),
            ("TCP -> nats R3, batch_bytes, pickle", {"type": "nats", "servers": r3.servers(), "stream": "LOGS",
                                                    "replicas": 3, "batch_bytes": 65536, "encoder": "pickle"}),
            ("TCP -> nats R3, pickle", {"type": "nats", "servers": r3.servers(), "stream": "LOGS",
                                       "replicas": 3, "encoder": "pickle"}),
        ]
        written_r3 = 0
        for label, out in outputs:
            runs = []
            for k in range(a.repeat):
                runs.append(host_row(a.bin, tmp, f"{label} {k}", out, a.records))
                if "R3" in label:
                    written_r3 += a.records + 1
            runs.sort()
            rows.append((label, *runs[len(runs) // 2]))
        for members in (1, 2):
            rows.append((f"central, {members} consumer(s), R3 -> file",
                         *central_row(a.bin, tmp, f"central{members}", r3.servers(), f"bench{members}",
                                      members, written_r3)))
    finally:
        r1.stop()
        r3.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][2]
    print(f"{'row':40} {'records/s':>12} {'CPU us/record':>14} {'CPU vs file':>12}")
    for label, rate, cpu in rows:
        print(f"{label:40} {rate:12,.0f} {cpu:14.2f} {cpu / base:11.2f}x")


if __name__ == "__main__":
    main()
