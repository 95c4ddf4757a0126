#!/usr/bin/env python3
"""TLS vs plaintext: logrelay's CPU per record on the same workload, same run.

One logrelay with two tcp inputs (one plain, one TLS with a certificate made
here by `openssl`) writing the cookbook format to a file. Each round sends
the same SocketHandler frames (made by the real `SocketHandler.makePickle`,
records shaped like the main scenario's) from N sender processes, over the
plain input and then over the TLS input, alternating, and reads logrelay's
CPU time (utime + stime from /proc) around each. The senders pre-build their
frames so they cost little; what is compared is logrelay's own CPU.

    python3 benches/e2e/tls.py [--records 200000] [--senders 4] [--rounds 3]

Prints one line per run and the median ratio TLS / plain (issue 16's target:
at most 1.3). Python standard library only; needs openssl and a built binary
(target/release/logrelay, or --binary).
"""

import argparse
import json
import multiprocessing
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import count_lines, cpu_seconds, frames, free_port  # noqa: E402


def make_cert(d: str) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", "server.key", "-out", "server.pem", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        cwd=d, check=True, capture_output=True)


def send(args) -> None:
    port, tls, blob, cafile = args
    s = socket.create_connection(("127.0.0.1", port))
    if tls:
        ctx = ssl.create_default_context(cafile=cafile)
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(blob)
    s.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "logrelay"))
    a = p.parse_args()
    if not os.path.exists(a.binary):
        print(f"no binary at {a.binary}: run `cargo build --release` first", file=sys.stderr)
        return 2
    per = a.records // a.senders
    blobs = [frames(per, s) for s in range(a.senders)]
    with tempfile.TemporaryDirectory() as d:
        make_cert(d)
        plain, secure = free_port(), free_port()
        config = {
            "inputs": {
                "plain": {"type": "tcp", "address": f"127.0.0.1:{plain}"},
                "tls": {"type": "tcp", "address": f"127.0.0.1:{secure}",
                        "tls": {"cert": "server.pem", "key": "server.key"}},
            },
            "outputs": {"file": {"type": "file", "path": "app.log",
                                 "format": "%(asctime)s %(levelname)-8s %(name)s %(message)s"}},
        }
        with open(os.path.join(d, "listener.json"), "w") as f:
            json.dump(config, f)
        proc = subprocess.Popen([a.binary, "--config", "listener.json"], cwd=d,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            out = os.path.join(d, "app.log")
            total = 0
            results = {"plain": [], "tls": []}
            cafile = os.path.join(d, "server.pem")
            with multiprocessing.Pool(a.senders) as pool:
                for r in range(a.rounds):
                    for kind, port in (("plain", plain), ("tls", secure)):
                        before = cpu_seconds(proc.pid)
                        t0 = time.monotonic()
                        pool.map(send, [(port, kind == "tls", b, cafile) for b in blobs])
                        total += per * a.senders
                        while count_lines(out) < total:
                            time.sleep(0.02)
                        wall = time.monotonic() - t0
                        cpu = cpu_seconds(proc.pid) - before
                        us = cpu / (per * a.senders) * 1e6
                        results[kind].append(us)
                        print(f"round {r + 1} {kind:5}: {us:.2f} us CPU/record, "
                              f"{per * a.senders / wall:,.0f} records/s", flush=True)
            plain_us = statistics.median(results["plain"])
            tls_us = statistics.median(results["tls"])
            print(json.dumps({"plain_us_per_record": round(plain_us, 3),
                              "tls_us_per_record": round(tls_us, 3),
                              "ratio": round(tls_us / plain_us, 3), "target": 1.3}))
        finally:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
