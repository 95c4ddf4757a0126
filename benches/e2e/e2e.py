#!/usr/bin/env python3
"""Measure a log listener end to end with loadgen.py and verify.py.

For each repetition: start the listener command in a fresh directory, wait
until it listens, run loadgen.py against it, poll its output files until all
records of the run are there, stop it (SIGTERM), take its CPU time from the
kernel (wait4, as /usr/bin/time -v does) and its peak RSS from /proc (VmHWM,
read just before stopping it), and run verify.py.

The end-to-end time runs from the first byte loadgen sent to the poll that
found the last record in the output files (polled every --poll seconds by
reading only the bytes added since the last poll).

The listener command is a template; these placeholders are filled in:
  {port}  a free TCP/UDP port on 127.0.0.1      {unix}  a socket path
  {out}   the output file path                  {dir}   the run directory
Example:
  e2e.py --transport tcp --records 200000 --procs 4 --repeat 3 \\
      --listener 'python3 listener.py --port {port} --out {out}'

Progress goes to stderr; one JSON line per run and a final JSON summary
(medians) go to stdout.  Exit status 0 when every run delivered and verified
every record, 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
# loadgen.py and verify.py live in tests/tools/ (the integration tests use
# the same copies); this file is benches/e2e/e2e.py.
TOOLS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "tools")


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(f"e2e: {msg}", file=sys.stderr, flush=True)


def free_port(kind: int) -> int:
    """A port on 127.0.0.1 that is free right now (for SOCK_STREAM or SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_net_has(table: str, port: int, state: str) -> bool:
    """True if /proc/net/<table> lists a local socket on port in the given state."""
    try:
        with open(f"/proc/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == state:
                    return True
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return False


def _unix_listening(path: str) -> bool:
    """True if a listening (or bound datagram) Unix socket exists at path."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                cols = line.split()
                if len(cols) >= 8 and cols[7] == path:
                    return True
    except (OSError, StopIteration):
        return os.path.exists(path)
    return False


def is_ready(transport: str, port: int, unix: str) -> bool:
    """Whether the listener has bound its socket (checked without connecting to it)."""
    if transport == "tcp":
        return _proc_net_has("tcp", port, "0A") or _proc_net_has("tcp6", port, "0A")
    if transport == "udp":
        return _proc_net_has("udp", port, "07") or _proc_net_has("udp6", port, "07")
    return _unix_listening(unix)


def machine_busy_seconds() -> Optional[float]:
    """CPU-seconds the whole machine has spent busy since boot (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = sum(fields[:8]) - idle          # guest time is already in user
    return busy / os.sysconf("SC_CLK_TCK")


def load_average() -> Optional[float]:
    """1-minute load average."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class TokenCounter:
    """Counts occurrences of a byte string in growing, rotating files, incrementally.

    Files are followed by inode, so a rename during rotation does not make
    anything count twice; only bytes added since the last poll are read.
    """

    def __init__(self, pattern: str, token: bytes):
        self.pattern = pattern
        self.token = token
        self.state: dict[tuple[int, int], tuple[int, bytes, int]] = {}  # offset, carry, count

    def poll(self) -> int:
        """Read what was appended since last time; return the total count."""
        keep = len(self.token) - 1
        for path in glob.glob(self.pattern):
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    key = (st.st_dev, st.st_ino)
                    offset, carry, count = self.state.get(key, (0, b"", 0))
                    if st.st_size < offset:       # truncated in place: start over
                        offset, carry = 0, b""
                    if st.st_size == offset:
                        continue
                    f.seek(offset)
                    while True:
                        data = f.read(4 << 20)
                        if not data:
                            break
                        buf = carry + data
                        count += buf.count(self.token)
                        carry = buf[-keep:] if keep else b""
                        offset += len(data)
                    self.state[key] = (offset, carry, count)
            except FileNotFoundError:
                continue
        return sum(c for _, _, c in self.state.values())


class Child:
    """A child process reaped with wait4(), so that its rusage is kept."""

    def __init__(self, cmd: list[str], **kw):
        self.popen = subprocess.Popen(cmd, **kw)
        self.pid = self.popen.pid
        self.status: Optional[int] = None
        self.usage = None

    def reap(self, timeout: float = 0.0) -> bool:
        """True once the child has exited (waiting up to timeout seconds)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            wpid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if wpid == self.pid:
                self.status, self.usage = status, usage
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    @property
    def exit_code(self) -> Optional[int]:
        """Exit code (negative: killed by that signal), None while running."""
        return None if self.status is None else os.waitstatus_to_exitcode(self.status)

    def stop(self, sig: int, timeout: float) -> bool:
        """Send sig, wait; SIGKILL after timeout.  False if it had to be killed."""
        if self.reap():
            return True
        os.kill(self.pid, sig)
        if self.reap(timeout):
            return True
        os.kill(self.pid, signal.SIGKILL)
        self.reap(60)
        return False

    def peak_rss_kib(self) -> Optional[int]:
        """VmHWM (peak resident set) of the running child, from /proc.

        Not ru_maxrss: Linux carries the parent's RSS at fork/exec time into
        the child's ru_maxrss, so a small listener started from a Python
        process would be reported as big as that process.
        """
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None

    def cpu_seconds(self) -> Optional[float]:
        """User + system CPU seconds, children it waited for included."""
        return None if self.usage is None else self.usage.ru_utime + self.usage.ru_stime


def last_json_line(text: str) -> Optional[dict]:
    """The last line of text that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def one_run(args: argparse.Namespace, rep: int, root: str) -> dict:
    """Start the listener, load it, wait for all records, stop it, verify."""
    rundir = os.path.join(root, f"run{rep}")
    os.makedirs(rundir)
    out = os.path.join(rundir, args.out_name)
    unix = os.path.join(rundir, "listener.sock")
    port = free_port(socket.SOCK_DGRAM if args.transport == "udp" else socket.SOCK_STREAM)
    fill = {"port": port, "unix": unix, "out": out, "dir": rundir}
    cmd = [a.format(**fill) for a in shlex.split(args.listener)]
    out_glob = args.out_glob.format(**fill) if args.out_glob else out + "*"
    run_id = f"{args.label_id}r{rep}{os.urandom(2).hex()}"
    result: dict = {"run": rep, "run_id": run_id, "label": args.label,
                    "transport": args.transport, "mode": args.mode, "procs": args.procs,
                    "records": args.records, "encoding": args.encoding}

    peak_rss = None
    with open(os.path.join(rundir, "listener.stdout"), "wb") as lout, \
            open(os.path.join(rundir, "listener.stderr"), "wb") as lerr:
        listener = Child(cmd, stdout=lout, stderr=lerr)
    try:
        deadline = time.monotonic() + args.ready_timeout
        while not is_ready(args.transport, port, unix):
            if listener.reap():
                raise RuntimeError(f"listener exited with {listener.exit_code} before "
                                   f"listening; see {rundir}/listener.stderr")
            if time.monotonic() > deadline:
                raise RuntimeError(f"listener not listening after {args.ready_timeout}s")
            time.sleep(0.02)

        target = {"tcp": ["--tcp", f"127.0.0.1:{port}"], "udp": ["--udp", f"127.0.0.1:{port}"],
                  "unix": ["--unix", unix], "unix-dgram": ["--unix-dgram", unix]}[args.transport]
        lg_cmd = [sys.executable, os.path.join(TOOLS, "loadgen.py"), *target,
                  "--records", str(args.records), "--procs", str(args.procs),
                  "--mode", args.mode, "--encoding", args.encoding,
                  "--msg-bytes", str(args.msg_bytes), "--run-id", run_id,
                  *shlex.split(args.loadgen_args)]
        load_before = load_average()
        busy_before = machine_busy_seconds()
        lg_path = os.path.join(rundir, "loadgen.stdout")
        with open(lg_path, "wb") as lg_out, \
                open(os.path.join(rundir, "loadgen.stderr"), "wb") as lg_err:
            loadgen = Child(lg_cmd, stdout=lg_out, stderr=lg_err)
        counter = TokenCounter(out_glob, f"rid={run_id} p=".encode())
        t_done = None
        count = last_count = 0
        last_change = time.monotonic()
        while True:
            count = counter.poll()
            now = time.monotonic()
            if count >= args.records:
                t_done = time.time()
                break
            if count != last_count:
                last_count, last_change = count, now
            if loadgen.status is None:
                if loadgen.reap():
                    last_change = now
            elif now - last_change > args.idle_timeout:
                log(f"run {rep}: no progress for {args.idle_timeout}s at {count}/"
                    f"{args.records} records; giving up")
                break
            if listener.reap():
                count = counter.poll()
                log(f"run {rep}: listener exited early with {listener.exit_code}")
                break
            time.sleep(args.poll)
        busy_after = machine_busy_seconds()
        if not loadgen.reap(args.idle_timeout + 60):
            loadgen.stop(signal.SIGKILL, 0)
        with open(lg_path, "rb") as f:
            lg = last_json_line(f.read().decode("utf-8", "replace")) or {}
        # Stop the listener and take its resource usage.
        peak_rss = listener.peak_rss_kib() if listener.status is None else None
        if not listener.stop(getattr(signal, "SIG" + args.stop_signal), args.stop_timeout):
            log(f"run {rep}: listener ignored SIG{args.stop_signal}; killed it")
    finally:
        if not listener.reap():
            listener.stop(signal.SIGKILL, 0)

    t_start = lg.get("t_start") or 0.0
    result.update({
        "loadgen_exit": loadgen.exit_code,
        "sent": lg.get("records"), "bytes_sent": lg.get("bytes"),
        "sender_seconds": lg.get("seconds"), "sender_rate": lg.get("rate"),
        "sender_cpu_s": round(loadgen.cpu_seconds() or 0, 3),
        "records_in_file": count,
        "e2e_seconds": round(t_done - t_start, 4) if t_done and t_start else None,
        "e2e_rate": round(args.records / (t_done - t_start), 1) if t_done and t_start else None,
        "listener_exit": listener.exit_code,
    })
    if listener.usage is not None:
        ru = listener.usage
        result.update({"listener_cpu_user_s": round(ru.ru_utime, 3),
                       "listener_cpu_sys_s": round(ru.ru_stime, 3),
                       "listener_cpu_s": round(ru.ru_utime + ru.ru_stime, 3)})
    if peak_rss is not None:
        result["listener_maxrss_mib"] = round(peak_rss / 1024, 1)
    if lg.get("errors"):
        result["loadgen_errors"] = lg["errors"]
    # Interference: CPU the rest of the machine used while this run went on
    # (from loadgen start to the last record seen; the listener's idle
    # start-up is counted as ours, so this slightly underestimates).
    if busy_before is not None and busy_after is not None and listener.usage is not None:
        ours = (loadgen.cpu_seconds() or 0) + (listener.cpu_seconds() or 0)
        result["other_cpu_s"] = round(max(0.0, busy_after - busy_before - ours), 2)
    result["loadavg_before"] = load_before

    if not args.no_verify:
        v_cmd = [sys.executable, os.path.join(TOOLS, "verify.py"), out_glob,
                 "--run-id", run_id, "--procs", str(args.procs), "--records", str(args.records),
                 *shlex.split(args.verify_args)]
        v = subprocess.run(v_cmd, capture_output=True, text=True)
        result["verify"] = last_json_line(v.stdout) or {"error": v.stderr[-2000:]}
        if v.returncode != 0:
            for line in v.stderr.strip().splitlines()[:10]:
                log(f"run {rep}: {line}")
    return result


def summarize(runs: list[dict], args: argparse.Namespace) -> dict:
    """Medians over runs of the figures that matter."""
    def med(key: str):
        vals = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(vals), 3) if vals else None
    ok = [r for r in runs if r.get("e2e_rate") and r.get("loadgen_exit") == 0
          and (args.no_verify or (r.get("verify") or {}).get("ok"))]
    return {
        "summary": True, "label": args.label, "transport": args.transport, "mode": args.mode,
        "procs": args.procs, "records": args.records, "encoding": args.encoding,
        "runs": len(runs), "runs_ok": len(ok),
        "e2e_rate_median": med("e2e_rate"), "e2e_seconds_median": med("e2e_seconds"),
        "e2e_rates": [r.get("e2e_rate") for r in runs],
        "sender_rate_median": med("sender_rate"),
        "listener_cpu_s_median": med("listener_cpu_s"),
        "listener_maxrss_mib_median": med("listener_maxrss_mib"),
        "sender_cpu_s_median": med("sender_cpu_s"),
        "other_cpu_s_median": med("other_cpu_s"),
        "lost_records_max": max((args.records - (r.get("records_in_file") or 0)) for r in runs),
        "verify_failures": sum(1 for r in runs if not args.no_verify
                               and not (r.get("verify") or {}).get("ok")),
    }


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(
        description="End-to-end benchmark of a log listener: records/s from first byte sent "
                    "to last record in the file, listener CPU and peak RSS, verification.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--listener", required=True,
                   help="listener command; placeholders {port} {unix} {out} {dir}")
    p.add_argument("--transport", choices=("tcp", "unix", "udp", "unix-dgram"), default="tcp")
    p.add_argument("--records", type=int, default=200000)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--mode", choices=("raw", "handler"), default="raw")
    p.add_argument("--encoding", choices=("pickle", "json", "msgpack"), default="pickle")
    p.add_argument("--msg-bytes", type=int, default=150)
    p.add_argument("--loadgen-args", default="", help="more loadgen.py arguments, one string")
    p.add_argument("--verify-args", default="",
                   help="more verify.py arguments, e.g. '--check-format cookbook'")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--label", default="", help="name for this configuration in the output")
    p.add_argument("--out-name", default="app.log", help="file name {out} gets in the run dir")
    p.add_argument("--out-glob", default="",
                   help="glob of all output files, default '{out}*' (rotated files included)")
    p.add_argument("--workdir", default="", help="where run directories go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep run directories and output files")
    p.add_argument("--no-verify", action="store_true",
                   help="skip verify.py (e.g. for a raw byte sink)")
    p.add_argument("--poll", type=float, default=0.02, help="seconds between output polls")
    p.add_argument("--idle-timeout", type=float, default=15.0,
                   help="give up when the output stops growing for this long after the "
                        "sender finished")
    p.add_argument("--ready-timeout", type=float, default=20.0)
    p.add_argument("--stop-signal", default="TERM", choices=("TERM", "INT", "HUP", "QUIT"))
    p.add_argument("--stop-timeout", type=float, default=30.0)
    p.add_argument("--json-out", default="", help="also append all JSON lines to this file")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Run the repetitions and print per-run and summary JSON."""
    args = build_parser().parse_args(argv)
    if args.repeat < 1 or args.records < 1 or args.procs < 1:
        print("e2e: error: --repeat, --records and --procs must be >= 1", file=sys.stderr)
        return 2
    args.label_id = "".join(c for c in args.label if c.isalnum())[:16] or "e2e"
    root = args.workdir or tempfile.mkdtemp(prefix="e2e-")
    os.makedirs(root, exist_ok=True)
    root = tempfile.mkdtemp(prefix="e2e-", dir=root) if args.workdir else root
    runs = []
    sink = open(args.json_out, "a") if args.json_out else None
    try:
        for rep in range(args.repeat):
            try:
                r = one_run(args, rep, root)
            except RuntimeError as e:
                log(f"run {rep}: {e}")
                r = {"run": rep, "label": args.label, "error": str(e)}
            runs.append(r)
            line = json.dumps(r)
            print(line, flush=True)
            if sink:
                sink.write(line + "\n")
            log(f"run {rep}: e2e {r.get('e2e_rate')} rec/s, sender {r.get('sender_rate')} "
                f"rec/s, listener cpu {r.get('listener_cpu_s')} s, rss "
                f"{r.get('listener_maxrss_mib')} MiB, other load {r.get('other_cpu_s')} "
                f"cpu-s, verify "
                f"{'skipped' if args.no_verify else (r.get('verify') or {}).get('ok')}")
            if not args.keep:
                shutil.rmtree(os.path.join(root, f"run{rep}"), ignore_errors=True)
        summary = summarize(runs, args)
        line = json.dumps(summary)
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")
    finally:
        if sink:
            sink.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"run directories kept under {root}")
    return 0 if summary["runs_ok"] == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
