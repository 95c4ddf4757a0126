#!/usr/bin/env python3
"""Many concurrent connections, each sending records (issue 8: "10,000
concurrent connections each sending records too: nothing lost").

``measure()`` (called by run.py as ``--conns N``, or ``conns.py --conns N``):

1. starts logrelay with the given config and waits until it listens;
2. opens N TCP connections from this one process with non-blocking sockets
   (at most ``inflight`` connects pending at a time, so the listen backlog does
   not overflow into SYN retransmits), and waits until logrelay holds them all
   (its socket count in /proc/PID/fd);
3. with all N still open, sends on every one of them K records, framed by the
   real ``logging.handlers.SocketHandler.makePickle`` (4-byte length + pickle),
   whose messages follow loadgen.py's ``rid=<run> p=<conn> seq=<k> ... #<crc32>``
   layout so that verify.py can check them;
4. waits until all N*K records are in the file (connections still open), reads
   logrelay's VmHWM, closes every connection, waits a moment, stops logrelay and
   runs verify.py with ``--procs N --records N*K``: every record exactly once.

RLIMIT_NOFILE's soft limit is raised to the hard one in this process (it holds
N sockets); logrelay inherits it (it does not raise its own limit).
Python standard library only.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import logging.handlers
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import shutil
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (benches/e2e/harness.py)


def frames_for(run_id: str, conn: int, k: int, pid: int) -> bytes:
    """K frames as SocketHandler sends them, messages in verify.py's layout."""
    h = logging.handlers.SocketHandler("127.0.0.1", 9)  # never connects: makePickle only
    out = []
    for seq in range(k):
        core = (f"rid={run_id} p={conn} seq={seq} lv=INFO lg=app.conns exc=0 "
                f"connection {conn} record {seq} of {k} status=200")
        msg = f"{core} #{zlib.crc32(core.encode()):08x}"
        rec = logging.LogRecord("app.conns", logging.INFO, "/srv/app/conns.py", 42, msg,
                                None, None, "send")
        rec.process = pid
        out.append(h.makePickle(rec))
    h.close()
    return b"".join(out)


def listener_sockets(pid: int) -> int:
    """Sockets open in process pid."""
    n = 0
    d = f"/proc/{pid}/fd"
    for name in os.listdir(d):
        try:
            if os.readlink(f"{d}/{name}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def raise_nofile(need: int) -> str:
    """Raise the soft RLIMIT_NOFILE to the hard one; '' or why it is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        return f"RLIMIT_NOFILE hard limit {hard} < {need}"
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return ""


def open_all(port: int, n: int, inflight: int, timeout: float) -> tuple[list, int]:
    """n connected non-blocking sockets (at most `inflight` connects pending)."""
    sel = selectors.DefaultSelector()
    done: list = []
    pending = 0
    started = failures = 0
    deadline = time.monotonic() + timeout
    while len(done) < n:
        while pending < inflight and started < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex(("127.0.0.1", port))
            started += 1
            if rc == 0:
                done.append(s)
            elif rc in (errno.EINPROGRESS, errno.EAGAIN):
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
            else:
                s.close()
                started -= 1
                failures += 1
        if time.monotonic() > deadline or failures > n:
            break
        for key, _ in sel.select(0.5):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(s)
            else:
                s.close()
                started -= 1
                failures += 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return done, failures


def send_all(socks: list, blobs: list[bytes], timeout: float) -> int:
    """Send blobs[i] on socks[i] (non-blocking, partial sends resumed); sockets done."""
    sel = selectors.DefaultSelector()
    left = {}
    for i, s in enumerate(socks):
        view = memoryview(blobs[i])
        try:
            sent = s.send(view)
        except BlockingIOError:
            sent = 0
        if sent < len(view):
            left[s] = view[sent:]
            sel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            try:
                sent = s.send(left[s])
            except BlockingIOError:
                continue
            left[s] = left[s][sent:]
            if not left[s]:
                del left[s]
                sel.unregister(s)
    sel.close()
    return len(socks) - len(left)


def measure(binary: str, config: dict, conns: int, per_conn: int = 10,
            inflight: int = 64, verbose: bool = False) -> dict:
    """One run; `config` is a logrelay config with @PORT@ and @OUT@ placeholders."""
    e2e = harness.import_e2e()
    why = raise_nofile(conns + 512)
    if why:
        return {"error": why}
    total = conns * per_conn
    run_id = f"conns{os.urandom(3).hex()}"
    result: dict = {"connections": conns, "records_per_connection": per_conn,
                    "records": total}
    t = time.perf_counter()
    blobs = [frames_for(run_id, c, per_conn, os.getpid()) for c in range(conns)]
    result["frame_build_seconds"] = round(time.perf_counter() - t, 2)
    rundir = tempfile.mkdtemp(prefix="logrelay-conns-")
    out = os.path.join(rundir, "app.log")
    relay, port = harness.start_logrelay(e2e, binary, config, rundir, out)
    socks: list = []
    try:
        if not harness.wait_listening(e2e, relay, port):
            return {**result, "error": f"logrelay did not listen ({relay.exit_code})"}
        base = listener_sockets(relay.pid)
        t0 = time.time()
        socks, failures = open_all(port, conns, inflight, timeout=60)
        result["connect_failures"] = failures
        # Wait until logrelay has accepted them all (its own socket count).
        held = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not relay.reap():
            held = listener_sockets(relay.pid) - base
            if held >= len(socks):
                break
            time.sleep(0.1)
        t1 = time.time()
        result["connected"] = len(socks)
        result["listener_connections_held"] = held
        result["connect_seconds"] = round(t1 - t0, 3)
        if len(socks) < conns:
            result["error"] = f"only {len(socks)} of {conns} connections opened"
        # All open together: now every one sends its records.
        counter = e2e.TokenCounter(out + "*", f"rid={run_id} p=".encode())
        t_send = time.time()
        result["connections_sent"] = send_all(socks, blobs, timeout=60)
        count = harness.wait_records_settle(counter, total, quiet_s=15, relay=relay)
        t_done = time.time() if count >= total else None
        result["records_in_file_before_close"] = count
        result["seconds"] = round(t_done - t_send, 3) if t_done else None
        result["rate"] = round(total / (t_done - t_send), 1) if t_done else None
        hwm = harness.proc_status_kib(relay.pid, "VmHWM")
        result["listener_fds_before_close"] = listener_sockets(relay.pid) - base
        for s in socks:
            s.close()
        socks = []
        time.sleep(1.0)          # every connection sees EOF and ends
        result["listener_alive_after_close"] = relay.reap() is False
        hwm = harness.proc_status_kib(relay.pid, "VmHWM") or hwm
        result["listener_sockets_after_close"] = listener_sockets(relay.pid) - base
        if hwm:
            result["peak_rss_mib"] = round(hwm / 1024, 1)
        rss = harness.proc_status_kib(relay.pid, "VmRSS")
        if rss:
            result["rss_after_close_mib"] = round(rss / 1024, 1)
    finally:
        for s in socks:
            s.close()
        result["listener_clean_exit"] = harness.stop(relay, 30)
    count = e2e.TokenCounter(out + "*", f"rid={run_id} p=".encode()).poll()
    result["records_in_file"] = count
    v = subprocess.run([sys.executable, harness.tool("verify.py"), out + "*",
                        "--run-id", run_id, "--procs", str(conns), "--records", str(total),
                        "--check-format", "cookbook", "--strict"],
                       capture_output=True, text=True)
    ver = e2e.last_json_line(v.stdout) or {"error": v.stderr[-2000:]}
    if verbose and not ver.get("ok"):
        print(v.stderr[-4000:], file=sys.stderr)
    result["lost"] = ver.get("missing")
    result["duplicated"] = ver.get("duplicated")
    result["verify"] = ver
    result["ok"] = bool(ver.get("ok")) and result.get("connected") == conns \
        and result.get("connections_sent") == conns and "error" not in result
    shutil.rmtree(rundir, ignore_errors=True)
    return result


def main(argv=None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(repo, "target", "release", "logrelay"))
    p.add_argument("--conns", type=int, default=10_000)
    p.add_argument("--per-conn", type=int, default=10)
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    import run as bench  # noqa: E402
    res = measure(os.path.abspath(args.binary), bench.logrelay_config(bench.Row("logrelay")),
                  args.conns, args.per_conn, args.inflight,
                  args.verbose)
    print(json.dumps(res))
    return 0 if res.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
