"""The steps conns.py, latency.py and run.py's idle check share: write a logrelay
config, start the binary, wait until it listens, wait until the records stop
arriving, read /proc/PID/status, stop it; and what ack.py and tls.py share:
pre-built SocketHandler frames, a process's CPU seconds, counting lines, a
free port; and the machine a report names (run.py, benches/fluentbit).

Processes are ``e2e.Child`` objects (``benches/e2e/e2e.py``, reaped with wait4());
pass that module, from ``import_e2e()``, where it is needed.
Python standard library only.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from typing import Optional


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# loadgen.py and verify.py: one copy, shared with the integration tests.
TOOLS = os.path.join(REPO, "tests", "tools")


def tool(name: str) -> str:
    """The path of a vendored tool in tests/tools (loadgen.py, verify.py)."""
    return os.path.join(TOOLS, name)


def import_e2e():
    """benches/e2e/e2e.py (Child, TokenCounter, free_port, is_ready, ...)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import e2e  # noqa: E402
    return e2e


def start_logrelay(e2e, binary: str, config: dict, rundir: str, out: str,
                   name: str = "listener", stderr_file: bool = True,
                   stdout=subprocess.DEVNULL):
    """Start `binary --log-level warn` on a free TCP port; returns (child, port).

    `config` is a logrelay config with @PORT@ and @OUT@ placeholders; it is filled
    with the port and `out` and written to rundir/<name>.json.  logrelay's stderr
    goes to rundir/<name>.stderr, or this process's stderr if not `stderr_file`.
    """
    port = e2e.free_port(socket.SOCK_STREAM)
    cfg_path = os.path.join(rundir, f"{name}.json")
    with open(cfg_path, "w") as f:
        f.write(json.dumps(config).replace("@PORT@", str(port)).replace("@OUT@", out))
    cmd = [binary, "--log-level", "warn", "--config", cfg_path]
    if not stderr_file:
        return e2e.Child(cmd, stdout=stdout), port
    # The child has its own copy of the descriptor; ours can close at once.
    with open(os.path.join(rundir, f"{name}.stderr"), "wb") as errf:
        return e2e.Child(cmd, stdout=stdout, stderr=errf), port


def wait_listening(e2e, relay, port: int, timeout: float = 20.0) -> bool:
    """Wait until something listens on TCP `port`; False if relay exited or timed out."""
    deadline = time.monotonic() + timeout
    while not e2e.is_ready("tcp", port, ""):
        if relay.reap() or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_records_settle(counter, expect: int, quiet_s: float = 15.0, relay=None) -> int:
    """Poll `counter` (an e2e.TokenCounter) until it reaches `expect`, `relay` exits,
    or no new record has arrived for `quiet_s` seconds; returns the last count."""
    last, last_change = -1, time.monotonic()
    while True:
        count = counter.poll()
        if count >= expect or (relay is not None and relay.reap()):
            return count
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > quiet_s:
            return count
        time.sleep(0.02)


def proc_status_kib(pid: int, key: str) -> Optional[int]:
    """A kB field of /proc/PID/status (VmHWM, VmRSS, ...), None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def stop(relay, timeout: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True if it exited by itself with code 0."""
    return relay.stop(signal.SIGTERM, timeout) and relay.exit_code == 0


def frames(n: int, sender: int) -> bytes:
    """`n` real `SocketHandler.makePickle` frames, shaped like the main
    scenario's records, numbered for sender `sender`."""
    import logging
    import logging.handlers
    h = logging.handlers.SocketHandler("127.0.0.1", 9)
    out = []
    for i in range(n):
        rec = logging.LogRecord(
            "app.payments.worker", logging.INFO, "/srv/app/payments/worker.py", 120,
            "charge %s for customer %d accepted after %d ms", ("EUR 12.50", sender * 1_000_000 + i, 37),
            None, "process_charge")
        out.append(h.makePickle(rec))
    return b"".join(out)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` so far, all its threads (those
    that ended too): its process CPU-time clock, read to the nanosecond
    (Linux's clock id for another process, MAKE_PROCESS_CPUCLOCK(pid,
    CPUCLOCK_SCHED)), else /proc's clock ticks (10 ms, too coarse for
    short runs)."""
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_lines(path: str) -> int:
    """Lines in `path` (0 if it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_info() -> dict:
    """CPUs, CPU model, kernel and the date (UTC), for a report's header."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model or platform.processor(),
            "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
