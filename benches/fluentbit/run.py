#!/usr/bin/env python3
"""logrelay against Fluent Bit on Fluent Bit's own workload (issue 23).

    python3 benches/fluentbit/run.py --fluent-bit /path/to/fluent-bit
    python3 benches/fluentbit/run.py --fluent-bit PATH --records 200000 --repeat 1

Workload: newline-delimited JSON records shaped like a Python LogRecord's
__dict__ (22 keys, made by tests/tools/loadgen.py's FrameBuilder, plus
`taskName` and `message` as a formatted Python 3.12 record has them), sent
over loopback TCP by one sender process that reads the pre-built bytes into
memory and sends them with sendall() in 1 MiB chunks.  Both listeners get
the very same bytes.

Rows (each listener in its own configuration for the same job):
  template   a four-field line per record to a file:
             logrelay  tcp input, decoder json, framing newline; file output,
                       format "%(created)f %(name)s %(levelname)s %(message)s"
             Fluent Bit in_tcp (format json); out_file, format template,
                       template "{created} {name} {levelname} {message}"
             (`%(created)f` because Fluent Bit prints a float field with C's
             "%f", six decimals: so both lines can be byte-identical)
  json       one JSON object per line: logrelay file output encoding json;
             Fluent Bit out_file format plain (its JSON-lines format)
  wasm       the template row with a no-op WASM filter in the route:
             logrelay  tests/fixtures/wasm/noop.wat
             Fluent Bit filter_wasm with a module written by this script
                       (one exported function returning the record it is
                       given, Fluent Bit's JSON ABI)

Per run, from the first byte sent to the poll that found the last line in
the file: the listener's CPU seconds (user + system of all its threads, from
/proc/PID/stat, read before the first byte and at the end, so start-up and
shutdown are not counted), records/s, peak RSS (VmHWM), and the CPU the rest
of the machine used meanwhile (/proc/stat minus the listener, the sender and
this script).  Listeners alternate run by run (logrelay, Fluent Bit,
logrelay, ...); the table shows medians and the ratios Fluent Bit / logrelay.
Every run must leave exactly the expected lines: one per record, plus, in
logrelay's text rows, the traceback lines Python's logging.Formatter writes
after a record with exc_text (Fluent Bit's template writes none).  Each
output's SHA-256, and that of its record lines alone, is compared across
runs and listeners, and the first differing record is shown.

Without --fluent-bit PATH nothing is run (the script says so and exits 0).
Fluent Bit is not built here: build it yourself (see README.md).  The
logrelay binary is target/release/logrelay (built with `cargo build
--release` if missing) or --binary PATH.  Python standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
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
REPO = os.path.dirname(os.path.dirname(HERE))
TOOLS = os.path.join(REPO, "tests", "tools")
NOOP_WAT = os.path.join(REPO, "tests", "fixtures", "wasm", "noop.wat")
# benches/e2e's helpers: a free port, /proc readings, the machine's header.
sys.path.insert(0, os.path.join(REPO, "benches", "e2e"))
import harness  # noqa: E402  (benches/e2e/harness.py)
e2e = harness.import_e2e()
TICKS = os.sysconf("SC_CLK_TCK")
CHUNK = 1 << 20

LOGRELAY_FORMAT = "%(created)f %(name)s %(levelname)s %(message)s"
FLUENTBIT_TEMPLATE = "{created} {name} {levelname} {message}"
ROWS = ("template", "json", "wasm")
ROW_TITLES = {"template": "template to file", "json": "JSON lines to file",
              "wasm": "template + no-op WASM filter"}
# filter_wasm's JSON ABI: fn(tag, tag_len, sec, nsec, record, record_len) -> char*
# (src/wasm/flb_wasm.c, flb_wasm_call_function_format_json).  Returning the
# record's own pointer keeps it unchanged.
FB_WASM_FUNCTION = "noop"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The workload.


def build_payload(path: str, records: int, msg_bytes: int, seed: int) -> dict:
    """Write `records` JSON lines to `path`; returns their count and size."""
    sys.path.insert(0, TOOLS)
    import loadgen  # tests/tools/loadgen.py: the project's realistic records
    opts = loadgen.Options(run_id="fb", mode="raw", transport="tcp", address=None,
                           encoding="json", msg_bytes=msg_bytes, exc_fraction=0.01,
                           unicode_fraction=0.01, batch_bytes=CHUNK, rate=0.0, seed=seed)
    builder = loadgen.FrameBuilder(opts, 0, loadgen.record_template_keys())
    size, exc_lines = 0, {}
    with open(path, "wb") as f:
        buf = []
        for seq in range(records):
            d = builder.record_dict(seq)
            d.setdefault("taskName", None)     # Python 3.12+ records carry it
            d["message"] = d["msg"]            # set by Formatter.format (args is None)
            if d["exc_text"]:
                exc_lines[seq] = d["exc_text"].count("\n") + 1
            line = json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            size += len(line)
            buf.append(line)
            if len(buf) >= 10000:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    return {"records": records, "bytes": size, "keys": len(d), "exc_lines": exc_lines}


def noop_wasm_module() -> bytes:
    """A WebAssembly module for Fluent Bit's filter_wasm that keeps every record:
    (memory (export "memory") 1)
    (func (export "noop") (param i32 i32 i32 i32 i32 i32) (result i32) local.get 4)"""
    def section(sid: int, body: bytes) -> bytes:
        assert len(body) < 128
        return bytes([sid, len(body)]) + body
    name = FB_WASM_FUNCTION.encode()
    return (b"\0asm" + bytes([1, 0, 0, 0])
            + section(1, bytes([1, 0x60, 6]) + b"\x7f" * 6 + bytes([1, 0x7f]))
            + section(3, bytes([1, 0]))
            + section(5, bytes([1, 0, 1]))
            + section(7, bytes([2, 6]) + b"memory" + bytes([2, 0, len(name)]) + name
                      + bytes([0, 0]))
            + section(10, bytes([1, 4, 0, 0x20, 4, 0x0B])))


def send_main(address: str, payload: str) -> int:
    """The sender (a separate process): read the payload, connect, sendall()."""
    host, port = address.rsplit(":", 1)
    with open(payload, "rb") as f:
        data = f.read()
    view = memoryview(data)
    s = socket.create_connection((host, int(port)), timeout=30)
    s.settimeout(None)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.time()
    for off in range(0, len(data), CHUNK):
        s.sendall(view[off:off + CHUNK])
    t_sent = time.time()
    s.close()       # the kernel still delivers what is queued, then the FIN
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"t_start": t_start, "t_sent": t_sent, "bytes": len(data),
                      "send_cpu_s": round(ru1.ru_utime + ru1.ru_stime
                                          - ru0.ru_utime - ru0.ru_stime, 3)}), flush=True)
    return 0


# --------------------------------------------------------------------------
# Listener configurations.


def logrelay_config(row: str, port: int, out: str) -> dict:
    inp = {"type": "tcp", "address": f"127.0.0.1:{port}", "decoder": "json",
           "framing": "newline"}
    outp: dict = {"type": "file", "path": out}
    if row == "json":
        outp["encoding"] = "json"
    else:
        outp["format"] = LOGRELAY_FORMAT
    route: dict = {"from": ["app"], "to": ["file"]}
    cfg: dict = {"inputs": {"app": inp}, "outputs": {"file": outp}, "routes": [route]}
    if row == "wasm":
        cfg["filters"] = {"noop": {"type": "wasm", "path": NOOP_WAT}}
        route["filters"] = ["noop"]
    return cfg


def fluentbit_config(row: str, port: int, out: str, wasm: str, flush: str) -> str:
    lines = ["[SERVICE]", f"    Flush        {flush}", "    Grace        1",
             "    Log_Level    warn", "    HTTP_Server  Off", "",
             "[INPUT]", "    Name    tcp", "    Listen  127.0.0.1", f"    Port    {port}",
             "    Format  json", "    Tag     app", ""]
    if row == "wasm":
        lines += ["[FILTER]", "    Name              wasm", "    Match             app",
                  f"    WASM_Path         {wasm}",
                  f"    Function_Name     {FB_WASM_FUNCTION}",
                  f"    Accessible_Paths  {os.path.dirname(wasm)}", ""]
    lines += ["[OUTPUT]", "    Name    file", "    Match   app",
              f"    Path    {os.path.dirname(out)}", f"    File    {os.path.basename(out)}"]
    if row == "json":
        lines += ["    Format  plain"]
    else:
        lines += ["    Format  template", f"    Template {FLUENTBIT_TEMPLATE}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Measuring.


def listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":
                        return True
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    return False


def proc_cpu_s(pid: int) -> Optional[tuple[float, float]]:
    """(utime, stime) of every thread of `pid`, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / TICKS, int(fields[12]) / TICKS
    except (OSError, ValueError, IndexError):
        return None


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class LineCounter:
    """Counts newlines in a growing file, reading only what was added."""

    def __init__(self, path: str):
        self.path, self.offset, self.count = path, 0, 0

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                while True:
                    data = f.read(8 << 20)
                    if not data:
                        break
                    self.count += data.count(b"\n")
                    self.offset += len(data)
        except FileNotFoundError:
            pass
        return self.count


def file_digest(path: str, extra: dict) -> tuple[str, str, int]:
    """(SHA-256 of the file, SHA-256 of its record lines, line count).

    `extra` maps a record's number to the lines that follow its own (the
    traceback Python's Formatter appends after a record with exc_text);
    those are left out of the second digest, which is then comparable with
    an output that writes one line per record."""
    whole, recs, lines = hashlib.sha256(), hashlib.sha256(), 0
    rec, skip = 0, 0
    with open(path, "rb") as f:
        for line in f:
            whole.update(line)
            lines += 1
            if skip:
                skip -= 1
                continue
            recs.update(line)
            skip = extra.get(rec, 0)
            rec += 1
    return whole.hexdigest(), recs.hexdigest(), lines


def expected_lines(who: str, row: str, pl: dict) -> tuple[int, dict]:
    """Lines the output must have, and the traceback lines in it per record.

    A text format in logrelay is Python's logging.Formatter: a record with
    exc_text gets its traceback on the lines after it.  Fluent Bit's template
    writes one line per record; JSON lines are one line per record in both."""
    if who == "logrelay" and row != "json":
        return pl["records"] + sum(pl["exc_lines"].values()), pl["exc_lines"]
    return pl["records"], {}


def one_run(who: str, row: str, rep: int, args, root: str, payload: str, pl: dict,
            wasm: str) -> dict:
    rundir = os.path.join(root, f"{row}-{who}-{rep}")
    os.makedirs(rundir)
    out = os.path.join(rundir, "out", "app.log")
    os.makedirs(os.path.dirname(out))
    port = harness.free_port()
    if who == "logrelay":
        cfg = os.path.join(rundir, "listener.json")
        with open(cfg, "w") as f:
            json.dump(logrelay_config(row, port, out), f, indent=1)
        cmd = [args.binary, "--log-level", "warn", "--config", cfg]
    else:
        cfg = os.path.join(rundir, "fluent-bit.conf")
        with open(cfg, "w") as f:
            f.write(fluentbit_config(row, port, out, wasm, args.fb_flush))
        cmd = [args.fluent_bit, "-c", cfg]
    res: dict = {"listener": who, "row": row, "run": rep}
    # Write back what earlier runs left dirty, so that their writeback does
    # not land in this run.
    os.sync()
    t_done = cpu0 = cpu1 = hwm = None
    want, extra = expected_lines(who, row, pl)
    with open(os.path.join(rundir, "stdout"), "wb") as lo, \
            open(os.path.join(rundir, "stderr"), "wb") as le:
        child = subprocess.Popen(cmd, stdout=lo, stderr=le)
    sender, s_ru, sent = None, None, {}
    try:
        deadline = time.monotonic() + 30
        while not listening(port):
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{who} is not listening (exit {child.poll()}); "
                                   f"see {rundir}/stderr")
            time.sleep(0.02)
        time.sleep(args.settle)       # let start-up work (WASM compilation) finish
        cpu0, busy0, self0 = proc_cpu_s(child.pid), e2e.machine_busy_seconds(), self_cpu_s()
        sender = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--send",
                                   f"127.0.0.1:{port}", "--payload", payload],
                                  stdout=subprocess.PIPE)
        counter = LineCounter(out)
        t_done = None
        last, last_change = -1, time.monotonic()
        while True:
            n = counter.poll()
            now = time.monotonic()
            if n >= want:
                t_done = time.time()
                break
            if n != last:
                last, last_change = n, now
            elif now - last_change > args.idle_timeout and sender.poll() is not None:
                log(f"   {who} {row} run {rep}: stuck at {n}/{want} lines")
                break
            if child.poll() is not None:
                log(f"   {who} {row} run {rep}: exited early ({child.returncode})")
                break
            time.sleep(args.poll)
        cpu1, busy1, self1 = proc_cpu_s(child.pid), e2e.machine_busy_seconds(), self_cpu_s()
        hwm = harness.proc_status_kib(child.pid, "VmHWM")
        if t_done is None and sender.poll() is None:
            sender.kill()
        s_out = sender.stdout.read()
        if sender.returncode is None:
            _, status, s_ru = os.wait4(sender.pid, 0)     # keep its rusage
            sender.returncode = os.waitstatus_to_exitcode(status)
        sent = json.loads(s_out.decode().strip().splitlines()[-1]) if s_out.strip() else {}
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if sender is not None and sender.poll() is None:
            sender.kill()
            sender.wait()
    sender_cpu = sent.get("send_cpu_s")
    digest, rec_digest, lines = file_digest(out, extra) if os.path.exists(out) else ("", "", 0)
    res.update({
        "lines": lines, "expected_lines": want, "sha256": digest, "records_sha256": rec_digest,
        "out": out, "exit": child.returncode,
        "cpu_s": round(sum(cpu1) - sum(cpu0), 3) if cpu0 and cpu1 else None,
        "cpu_user_s": round(cpu1[0] - cpu0[0], 3) if cpu0 and cpu1 else None,
        "cpu_sys_s": round(cpu1[1] - cpu0[1], 3) if cpu0 and cpu1 else None,
        "wall_s": round(t_done - sent["t_start"], 4) if t_done and sent.get("t_start") else None,
        "peak_rss_mib": round(hwm / 1024, 1) if hwm else None,
        "sender_send_cpu_s": sender_cpu,
    })
    if res["wall_s"]:
        res["records_per_s"] = round(args.records / res["wall_s"])
    if res["cpu_s"] is not None:
        res["cpu_us_per_record"] = round(res["cpu_s"] / args.records * 1e6, 3)
        # The sender's whole CPU (its read of the payload included) and ours.
        sender_total = (s_ru.ru_utime + s_ru.ru_stime) if s_ru else 0.0
        if busy0 is not None and busy1 is not None:
            res["other_cpu_s"] = round(max(0.0, busy1 - busy0 - res["cpu_s"] - sender_total
                                           - (self1 - self0)), 2)
    res["ok"] = lines == want and res["wall_s"] is not None
    if not args.keep and rep > 0:
        shutil.rmtree(rundir, ignore_errors=True)
    return res


def record_lines(path: str, extra: dict):
    """The record lines of a file (traceback lines after a record left out)."""
    rec, skip = 0, 0
    with open(path, "rb") as f:
        for line in f:
            if skip:
                skip -= 1
                continue
            yield line
            skip = extra.get(rec, 0)
            rec += 1


def first_difference(a: str, extra_a: dict, b: str, extra_b: dict
                     ) -> Optional[tuple[int, bytes, bytes]]:
    """(record number, line in a, line in b) of the first record whose lines differ."""
    for i, (la, lb) in enumerate(zip(record_lines(a, extra_a), record_lines(b, extra_b))):
        if la != lb:
            return i, la.rstrip(b"\n"), lb.rstrip(b"\n")
    return None


# --------------------------------------------------------------------------
# Report.


def med(runs: list[dict], key: str) -> Optional[float]:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def report(results: list[dict], rows: list[str], args) -> tuple[str, list[dict]]:
    head = ("| row | listener | CPU µs/record | records/s | peak RSS MiB | runs ok | "
            "other_cpu_s | FB/logrelay CPU per record | logrelay/FB rate | FB/logrelay RSS | "
            "same bytes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    summary = []
    for row in rows:
        by = {who: [r for r in results if r["row"] == row and r["listener"] == who]
              for who in ("logrelay", "fluent-bit")}
        digests = {r["sha256"] for rs in by.values() for r in rs if r.get("ok")}
        rec_digests = {r["records_sha256"] for rs in by.values() for r in rs if r.get("ok")}
        ok_all = all(r.get("ok") for rs in by.values() for r in rs)
        if ok_all and len(digests) == 1:
            same = "yes"
        elif ok_all and len(rec_digests) == 1:
            same = "record lines yes *"
        else:
            same = "no"
        m = {who: {k: med(rs, k) for k in ("cpu_us_per_record", "records_per_s",
                                            "peak_rss_mib", "other_cpu_s")}
             for who, rs in by.items()}
        lr, fb = m["logrelay"], m["fluent-bit"]

        def ratio(a, b):
            return a / b if a and b else None
        cpu_x = ratio(fb["cpu_us_per_record"], lr["cpu_us_per_record"])
        rate_x = ratio(lr["records_per_s"], fb["records_per_s"])
        rss_x = ratio(fb["peak_rss_mib"], lr["peak_rss_mib"])
        for who, rs in by.items():
            v = m[who]
            first = who == "logrelay"
            lines.append("| " + " | ".join([
                ROW_TITLES[row] if first else "", who,
                fmt(v["cpu_us_per_record"], ".2f"), fmt(v["records_per_s"], ",.0f"),
                fmt(v["peak_rss_mib"], ".1f"),
                f"{sum(1 for r in rs if r.get('ok'))}/{len(rs)}",
                fmt(v["other_cpu_s"], ".2f"),
                fmt(cpu_x, ".2f") + "x" if first and cpu_x else "",
                fmt(rate_x, ".2f") + "x" if first and rate_x else "",
                fmt(rss_x, ".2f") + "x" if first and rss_x else "",
                same if first else ""]) + " |")
        summary.append({"row": row, "medians": m, "fb_over_logrelay_cpu_per_record": cpu_x,
                        "logrelay_over_fb_rate": rate_x, "fb_over_logrelay_rss": rss_x,
                        "byte_identical": same, "digests": sorted(digests),
                        "record_digests": sorted(rec_digests)})
    return "\n".join(lines), summary


def logrelay_binary(path: str) -> str:
    if path:
        return path
    path = os.path.join(REPO, "target", "release", "logrelay")
    if not os.path.exists(path):
        log("building the release binary (cargo build --release)")
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    return path


def fluentbit_version(path: str) -> str:
    try:
        p = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        return " ".join((p.stdout + p.stderr).split()) or "unknown"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--fluent-bit", default="", metavar="PATH",
                   help="the fluent-bit binary to compare with (required to run anything)")
    p.add_argument("--binary", default="", help="logrelay binary (default "
                   "target/release/logrelay, built if missing)")
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3, help="runs per listener and row")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated: " + ", ".join(ROWS))
    p.add_argument("--msg-bytes", type=int, default=150,
                   help="approximate size of msg (and of message), as loadgen.py's")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fb-flush", default="0.1",
                   help="Fluent Bit's [SERVICE] Flush seconds (its default is 1; "
                        "logrelay's flush_ms is 100)")
    p.add_argument("--settle", type=float, default=0.5,
                   help="seconds between listening and the first byte")
    p.add_argument("--poll", type=float, default=0.02)
    p.add_argument("--idle-timeout", type=float, default=20.0)
    p.add_argument("--workdir", default="", help="where payload and outputs go (default: temp)")
    p.add_argument("--keep", action="store_true", help="keep every run directory")
    p.add_argument("--json-out", default="", help="write every run and the summary here")
    p.add_argument("--send", default="", help=argparse.SUPPRESS)
    p.add_argument("--payload", default="", help=argparse.SUPPRESS)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.send:
        return send_main(args.send, args.payload)
    if not args.fluent_bit:
        print("benches/fluentbit: skipped: no Fluent Bit binary given. Build Fluent Bit "
              "(see benches/fluentbit/README.md) and pass --fluent-bit PATH.")
        return 0
    if not os.access(args.fluent_bit, os.X_OK):
        print(f"benches/fluentbit: error: {args.fluent_bit} is not an executable",
              file=sys.stderr)
        return 2
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad or args.records < 1 or args.repeat < 1:
        print(f"benches/fluentbit: error: bad --rows {bad} or --records/--repeat < 1",
              file=sys.stderr)
        return 2
    args.binary = logrelay_binary(args.binary)
    info = harness.machine_info()
    fbv = fluentbit_version(args.fluent_bit)
    root = tempfile.mkdtemp(prefix="fluentbit-bench-", dir=args.workdir or None)
    try:
        payload = os.path.join(root, "payload.jsonl")
        t = time.monotonic()
        pl = build_payload(payload, args.records, args.msg_bytes, args.seed)
        wasm = os.path.join(root, "wasm", "noop.wasm")
        os.makedirs(os.path.dirname(wasm))
        with open(wasm, "wb") as f:
            f.write(noop_wasm_module())
        header = (f"machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}; "
                  f"{info['date']}\n"
                  f"logrelay: {args.binary}\nFluent Bit: {args.fluent_bit} ({fbv}), "
                  f"Flush {args.fb_flush}\n"
                  f"workload: {pl['records']:,} JSON lines of {pl['keys']} keys, "
                  f"{pl['bytes'] / pl['records']:.0f} bytes each on average "
                  f"({pl['bytes'] / 2**20:.0f} MiB), one TCP sender; "
                  f"{args.repeat} runs per listener and row, medians")
        log(header)
        log(f"payload built in {time.monotonic() - t:.1f}s")
        results: list[dict] = []
        for row in rows:
            for rep in range(args.repeat):
                for who in ("logrelay", "fluent-bit"):
                    try:
                        r = one_run(who, row, rep, args, root, payload, pl, wasm)
                    except RuntimeError as e:
                        r = {"listener": who, "row": row, "run": rep, "ok": False,
                             "error": str(e)}
                    results.append(r)
                    log(f"  {row:8} {who:10} run {rep}: "
                        f"{fmt(r.get('cpu_us_per_record'), '.2f')} µs/rec "
                        f"(user {fmt(r.get('cpu_user_s'), '.2f')} s, "
                        f"sys {fmt(r.get('cpu_sys_s'), '.2f')} s), "
                        f"{fmt(r.get('records_per_s'), ',.0f')} rec/s, "
                        f"{fmt(r.get('peak_rss_mib'), '.1f')} MiB, lines {r.get('lines')}, "
                        f"other {fmt(r.get('other_cpu_s'), '.2f')} cpu-s"
                        + (f", ERROR {r['error']}" if r.get("error") else ""))
            firsts = {r["listener"]: r for r in results
                      if r["row"] == row and r["run"] == 0 and r.get("ok")}
            if len(firsts) == 2:
                a, b = firsts["logrelay"], firsts["fluent-bit"]
                if a["records_sha256"] != b["records_sha256"]:
                    d = first_difference(a["out"], expected_lines("logrelay", row, pl)[1],
                                         b["out"], expected_lines("fluent-bit", row, pl)[1])
                    if d:
                        at = next((i for i, (x, y) in enumerate(zip(d[1], d[2])) if x != y),
                                  min(len(d[1]), len(d[2])))
                        lo = max(0, at - 60)
                        log(f"  {row}: outputs differ from record {d[0]}, byte {at}:\n"
                            f"    logrelay:   ...{d[1][lo:at + 60].decode('utf-8', 'replace')}\n"
                            f"    Fluent Bit: ...{d[2][lo:at + 60].decode('utf-8', 'replace')}")
            if not args.keep:
                for r in results:
                    if r["row"] == row and r.get("out"):
                        shutil.rmtree(os.path.dirname(os.path.dirname(r["out"])),
                                      ignore_errors=True)
        table, summary = report(results, rows, args)
        print(header)
        print(table)
        print("CPU: user + system of the listener's threads from the first byte sent to "
              "the last line in the file; records/s over the same interval; "
              "other_cpu_s: CPU the rest of the machine used meanwhile.")
        if any(x["byte_identical"].endswith("*") for x in summary):
            n = len(pl["exc_lines"])
            print(f"* the record lines are byte-identical; logrelay's file also has the "
                  f"tracebacks of the {n:,} records with exc_text ({n / pl['records']:.0%}) on "
                  f"the lines after them ({sum(pl['exc_lines'].values()):,} lines), as "
                  f"Python's logging.Formatter writes them; Fluent Bit's template does not.")
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"machine": info, "fluent_bit": fbv, "workload": pl,
                           "runs": results, "summary": summary}, f, indent=1)
        return 0 if all(r.get("ok") for r in results) else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"kept {root}")


if __name__ == "__main__":
    sys.exit(main())
