#!/usr/bin/env python3
"""End-to-end benchmark of logrelay against the Python cookbook listener and a
raw-copy receiver, all in the same run (issue 8).

    python3 benches/e2e/run.py            # full table (about 10 minutes)
    python3 benches/e2e/run.py --quick    # main scenario only, 1 repeat (about 2 minutes)

Both also measure, for the main scenario, the p99 latency from a record sent
to its line in the file under load (latency.py, --latency) and 10,000
concurrent connections each sending records (conns.py, --conns): nothing lost,
peak RSS.

It drives every listener with benches/e2e/e2e.py (which uses
tests/tools/loadgen.py and verify.py, the copies the integration tests use),
and prints one table: records/s end to end, listener CPU
microseconds per record, records per listener CPU-second, peak RSS, and the
ratios to the cookbook listener and to rawsink *measured in the same run* (never
absolute numbers alone: this machine is shared and its speed varies). It also
prints the machine (nproc, CPU model), the date and the CPU the rest of the
machine used meanwhile (`other_cpu_s`, from e2e.py): if that is high, the
figures are noisy.

Python standard library only, except the msgpack row, whose senders need the
Python `msgpack` package: when it is missing, run.py installs it into
target/bench-python/ (never into the system Python), and if pip cannot, it
skips the row and says so. Needs a C compiler for rawsink (peers/rawsink.c,
built with `cc -O2 -pthread` into target/bench/ when missing or changed) and
the release binary (built with `cargo build --release` if missing, or pass
`--binary`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PEERS = os.path.join(HERE, "peers")
sys.path.insert(0, HERE)
import harness  # noqa: E402  (benches/e2e/harness.py)

COOKBOOK_FORMAT = "%(asctime)s %(levelname)-8s %(name)s %(process)d %(message)s"
NOOP_WAT = os.path.join(REPO, "tests", "fixtures", "wasm", "noop.wat")
# Rotated files must all stay for the whole run (e2e.py counts records in
# them), so keep many backups of the same 10 MiB size the cookbook uses.
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 1000


@dataclass
class Row:
    """One measured configuration."""
    listener: str            # logrelay | cookbook | rawsink
    transport: str = "tcp"   # tcp | unix
    procs: int = 4
    encoding: str = "pickle"  # wire format in
    output: str = "text"     # text (cookbook format) | json
    wasm: bool = False       # a no-op WASM filter in the route
    cpus: int = 0            # logrelay pinned to this many CPUs (taskset), 0 = not pinned
    na: str = ""             # why this row was not measured
    summary: dict = field(default_factory=dict)

    @property
    def peer_key(self) -> tuple:
        return (self.transport, self.procs)

    def label(self) -> str:
        parts = [self.listener, self.transport, f"{self.procs}p", self.encoding, self.output]
        if self.wasm:
            parts.append("wasm")
        if self.cpus:
            parts.append(f"{self.cpus}cpu")
        return "-".join(parts)


def rows_for(quick: bool) -> list[Row]:
    """The table's rows: the main scenario, then one dimension varied at a time."""
    if quick:
        logrelay = [Row("logrelay"), Row("logrelay", wasm=True)]
    else:
        logrelay = [
            Row("logrelay", "tcp", 4),
            Row("logrelay", "tcp", 1),
            Row("logrelay", "unix", 4),
            Row("logrelay", "unix", 1),
            Row("logrelay", encoding="json"),
            Row("logrelay", encoding="msgpack"),
            Row("logrelay", output="json"),
            Row("logrelay", wasm=True),
            Row("logrelay", "tcp", 1, wasm=True),
            # How the main scenario scales with cores (the senders are not
            # pinned): logrelay on one CPU, then on two.
            Row("logrelay", cpus=1),
            Row("logrelay", cpus=2),
        ]
    keys = sorted({r.peer_key for r in logrelay})
    peers = [Row(kind, t, p) for (t, p) in keys for kind in ("cookbook", "rawsink")]
    return logrelay + peers


def msgpack_env(install: bool) -> tuple[dict, str]:
    """Make the Python msgpack package importable by the senders (loadgen.py
    --encoding msgpack needs it). Returns (extra environment for e2e.py, "")
    or ({}, why the msgpack row is skipped). A missing package is installed
    with `pip install --target target/bench-python/<tag>`, as `cargo test`
    does for its own Python prerequisites, never into the system Python."""
    probe = [sys.executable, "-c", "import msgpack"]
    if subprocess.run(probe, stderr=subprocess.DEVNULL).returncode == 0:
        return {}, ""
    tag = sys.implementation.cache_tag
    target = os.path.join(REPO, "target", "bench-python", tag)
    env = {"PYTHONPATH": os.pathsep.join(
        [target] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    if subprocess.run(probe, env={**os.environ, **env},
                      stderr=subprocess.DEVNULL).returncode == 0:
        return env, ""
    skip = "skipped: pip install msgpack"
    if not install:
        return {}, skip
    print(f"msgpack row: installing the Python msgpack package into {target} "
          "(pip install --target; --no-install skips this)", file=sys.stderr, flush=True)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                          "--disable-pip-version-check", "--target", target, "msgpack"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if pip.returncode == 0 and subprocess.run(probe, env={**os.environ, **env},
                                              stderr=subprocess.DEVNULL).returncode == 0:
        return env, ""
    print(f"msgpack row skipped: pip could not install msgpack "
          f"({(pip.stderr.strip().splitlines() or ['no output'])[-1]}); pip install msgpack",
          file=sys.stderr, flush=True)
    return {}, skip


def logrelay_config(row: Row) -> dict:
    """The logrelay config of a row, with @PORT@/@UNIX@/@OUT@ placeholders."""
    if row.transport == "tcp":
        inp = {"type": "tcp", "address": "127.0.0.1:@PORT@"}
    else:
        inp = {"type": "unix", "path": "@UNIX@"}
    inp["decoder"] = row.encoding
    out = {"type": "file", "path": "@OUT@", "max_bytes": MAX_BYTES, "backup_count": BACKUPS}
    if row.output == "json":
        out["encoding"] = "json"
    else:
        out["format"] = COOKBOOK_FORMAT
    route: dict = {"to": ["file"]}
    cfg: dict = {"inputs": {"app": inp}, "outputs": {"file": out}, "routes": [route]}
    if row.wasm:
        cfg["filters"] = {"noop": {"type": "wasm", "path": NOOP_WAT}}
        route["filters"] = ["noop"]
    return cfg


def listener_command(row: Row, binary: str, tmp: str, rawsink: str, cookbook: str) -> str:
    """The --listener command for e2e.py ({port} {unix} {out} {dir} are filled in by it)."""
    if row.listener == "rawsink":
        where = "--port {port}" if row.transport == "tcp" else "--unix {unix}"
        return f"{shlex.quote(rawsink)} {where} --out {{out}}"
    if row.listener == "cookbook":
        where = "--port {port}" if row.transport == "tcp" else "--unix {unix}"
        return (f"{shlex.quote(sys.executable)} {shlex.quote(cookbook)} {where} "
                f"--out {{out}} --max-bytes {MAX_BYTES} --backup-count {BACKUPS}")
    # logrelay reads its address from the config file, so a shell fills the
    # template and then *execs* the binary: same pid, so e2e.py's wait4() CPU
    # and VmHWM are logrelay's (plus ~2 ms for sh and sed, noted in
    # benches/e2e/README.md).
    template = os.path.join(tmp, f"{row.label()}.json.in")
    with open(template, "w") as f:
        json.dump(logrelay_config(row), f, indent=1)
    # taskset execs the binary in turn: still the same pid.
    pin = f"taskset -c {','.join(str(c) for c in range(row.cpus))} " if row.cpus else ""
    script = (f"sed -e 's#@PORT@#{{port}}#' -e 's#@UNIX@#{{unix}}#' -e 's#@OUT@#{{out}}#' "
              f"{shlex.quote(template)} > {{dir}}/listener.json && "
              f"exec {pin}{shlex.quote(binary)} --log-level warn --config {{dir}}/listener.json")
    return f"sh -c {shlex.quote(script)}"


def run_row(row: Row, args, binary: str, tmp: str, rawsink: str, env: dict) -> None:
    """Run e2e.py for one row and keep its summary line."""
    if row.na:
        return
    cmd = [sys.executable, os.path.join(HERE, "e2e.py"),
           "--label", row.label(), "--transport", row.transport, "--procs", str(row.procs),
           "--mode", "raw", "--encoding", row.encoding, "--records", str(args.records),
           "--repeat", str(args.repeat),
           "--listener", listener_command(row, binary, tmp, rawsink,
                                          os.path.join(PEERS, "cookbook_listener.py"))]
    loadgen_args = []
    if row.output == "json":
        # Our JSON lines keep non-ASCII as UTF-8, but verify.py's CRC check
        # is byte-exact; keep the messages ASCII to be safe.
        loadgen_args += ["--unicode-fraction", "0"]
    if loadgen_args:
        cmd += ["--loadgen-args", " ".join(loadgen_args)]
    if row.listener == "rawsink":
        cmd.append("--no-verify")
    elif row.output == "json":
        cmd += ["--verify-args=--loose"]  # "=": argparse reads a lone "--loose" as an option
    else:
        cmd += ["--verify-args", "--check-format cookbook"]
    if args.json_out:
        cmd += ["--json-out", args.json_out]
    print(f"== {row.label()} ({args.records} records x {args.repeat})", file=sys.stderr,
          flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **env},
                       stderr=None if args.verbose else subprocess.PIPE)
    for line in reversed(p.stdout.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("summary"):
            row.summary = obj
            break
    if not row.summary:
        row.na = f"failed (e2e.py exit {p.returncode})"
    if not row.summary or row.summary.get("runs_ok") != row.summary.get("runs"):
        # Say why here, not only as 0/3 in the table.
        tail = (p.stderr or "").strip().splitlines()[-5:]
        print(f"   {row.label()}: not every run verified; e2e.py's last lines:\n     "
              + "\n     ".join(tail or ["(run with --verbose)"]), file=sys.stderr, flush=True)


def cpu_us(row: Row) -> Optional[float]:
    cpu = row.summary.get("listener_cpu_s_median")
    n = row.summary.get("records")
    return cpu / n * 1e6 if cpu and n else None


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def ratio(a, b) -> Optional[float]:
    return a / b if a and b else None


def table(rows: list[Row], args) -> str:
    """A Markdown table; ratios against the cookbook and rawsink rows of the
    same transport and sender count, from this run."""
    peers = {(r.listener, r.peer_key): r for r in rows if r.listener != "logrelay"}
    head = ("| listener | transport | senders | in | out | wasm | cpus | records/s | "
            "CPU µs/rec | rec/CPU-s | peak RSS MiB | vs cookbook rec/s | vs cookbook CPU | "
            "vs rawsink rec/s | ok | other_cpu_s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r.listener, r.transport, str(r.procs), r.encoding,
                 r.output if r.listener == "logrelay" else ("text" if r.listener == "cookbook"
                                                            else "raw bytes"),
                 "noop" if r.wasm else "", str(r.cpus) if r.cpus else "all"]
        if r.na:
            lines.append("| " + " | ".join(cells + [r.na] + [""] * 8) + " |")
            continue
        s = r.summary
        rate = s.get("e2e_rate_median")
        us = cpu_us(r)
        per_cpu = 1e6 / us if us else None
        cook = peers.get(("cookbook", r.peer_key))
        raw = peers.get(("rawsink", r.peer_key))
        cook_rate = cook.summary.get("e2e_rate_median") if cook and cook.summary else None
        cook_us = cpu_us(cook) if cook and cook.summary else None
        raw_rate = raw.summary.get("e2e_rate_median") if raw and raw.summary else None
        ok = f"{s.get('runs_ok')}/{s.get('runs')}"
        cells += [fmt(rate, ",.0f"), fmt(us, ".2f"), fmt(per_cpu, ",.0f"),
                  fmt(s.get("listener_maxrss_mib_median"), ".1f"),
                  fmt(ratio(rate, cook_rate), ".1f") + "x" if cook_rate else "-",
                  fmt(ratio(cook_us, us), ".1f") + "x" if cook_us and us else "-",
                  fmt(ratio(rate, raw_rate), ".0%") if raw_rate else "-",
                  ok, fmt(s.get("other_cpu_s_median"), ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_targets(rows: list[Row]) -> list[str]:
    """Issue 23's targets, as ratios to this run's own figures: the main
    scenario (4 raw TCP senders, pickle in, cookbook format to a rotating
    file) against rawsink, and the other rows against the main scenario."""
    def find(**kw) -> Optional[Row]:
        for r in rows:
            if r.listener == "logrelay" and all(getattr(r, k) == v for k, v in kw.items()) \
                    and r.summary:
                return r
        return None
    base = dict(transport="tcp", procs=4, encoding="pickle", output="text", wasm=False, cpus=0)
    main = find(**base)
    raw = next((r for r in rows if r.listener == "rawsink" and r.peer_key == ("tcp", 4)
                and r.summary), None)
    out = []

    def line(name, value, goal, good):
        out.append(f"- {name}: {value} (target {goal}) {'MET' if good else 'NOT MET'}")
    if not main:
        return out
    us = cpu_us(main)
    if raw and us and cpu_us(raw):
        x = us / cpu_us(raw)
        line("main scenario CPU per record vs rawsink", f"{x:.2f}x", "<= 2.0x; at least <= 2.5x",
             x <= 2.0)
        r = main.summary["e2e_rate_median"] / raw.summary["e2e_rate_median"]
        line("main scenario end-to-end rate vs rawsink", f"{r:.0%}", ">= 80%", r >= 0.8)
    rss = main.summary.get("listener_maxrss_mib_median")
    line("peak RSS under load", f"{rss} MiB", "< 10 MiB", rss is not None and rss < 10)
    for name, kw, goal in [("JSON in", dict(encoding="json"), 1.3),
                           ("JSON lines out", dict(output="json"), 1.3),
                           ("a no-op WASM filter", dict(wasm=True), 1.15)]:
        row = find(**{**base, **kw})
        if row and us and cpu_us(row):
            x = cpu_us(row) / us
            line(f"{name}: CPU per record vs the main scenario", f"{x:.2f}x", f"<= {goal}x",
                 x <= goal)
    one, two = find(**{**base, "cpus": 1}), find(**{**base, "cpus": 2})
    if one and two:
        r1, r2 = one.summary["e2e_rate_median"], two.summary["e2e_rate_median"]
        out.append(f"- cores: pinned to 1 CPU {r1:,.0f} records/s, to 2 CPUs {r2:,.0f} "
                   f"({r2 / r1:.2f}x); CPU per record {cpu_us(one):.2f} and {cpu_us(two):.2f} µs")
    return out


def idle_connections(binary: str, tmp: str, n: int) -> dict:
    """Peak RSS of logrelay holding `n` idle TCP connections (issue 23: below
    32 MiB with 10,000). Connections are opened from this process, so both
    sides need n file descriptors: the soft limit is raised to the hard one."""
    import resource
    import socket
    import time
    e2e = harness.import_e2e()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 1024
    if hard != resource.RLIM_INFINITY and hard < want:
        return {"error": f"RLIMIT_NOFILE hard limit {hard} < {want}"}
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    # stdout and stderr are this process's, as before.
    relay, port = harness.start_logrelay(e2e, binary, logrelay_config(Row("logrelay")), tmp,
                                         os.path.join(tmp, "idle.log"), name="idle",
                                         stderr_file=False, stdout=None)
    socks = []
    try:
        if not harness.wait_listening(e2e, relay, port):
            return {"error": "logrelay did not start listening"}
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(2.0)  # let every connection task start and park
        hwm = harness.proc_status_kib(relay.pid, "VmHWM")
        rss = harness.proc_status_kib(relay.pid, "VmRSS")
        return {"connections": len(socks),
                "peak_rss_mib": round(hwm / 1024, 1),
                "rss_mib": round(rss / 1024, 1)}
    finally:
        for s in socks:
            s.close()
        harness.stop(relay, 30)


def latency_target(lat: dict) -> str:
    """The p99 latency line of the targets (latency.py's result)."""
    if "error" in lat:
        return f"- p99 latency under load: not measured ({lat['error']})"
    u, goal = lat["under_load"], lat["target_ms"]
    verdict = "MET" if lat["met"] else "NOT MET"
    if u["count"] < 100:
        verdict += f" (only {u['count']} probes under load: too few for a p99)"
    extra = "" if lat.get("verify_ok") else "; load run did NOT verify"
    return (f"- p99 latency under load, sent to in the file (a real SocketHandler on its own "
            f"connection, one record per {lat['interval_ms']:.0f} ms, while 4 raw senders send "
            f"{lat['records']:,} records over {lat['load_seconds']} s at "
            f"{lat['sender_rate'] or 0:,.0f} rec/s): {u['count']} probes, p50 {u['p50_ms']} ms, "
            f"p99 {u['p99_ms']} ms, max {u['max_ms']} ms (target <= {goal:g} ms) {verdict}; idle p50 {lat['idle']['p50_ms']} ms, "
            f"{lat['probes_lost']} probes lost{extra}")


def conns_target(c: dict) -> str:
    """The concurrent-connections line of the targets (conns.py's result)."""
    if "error" in c and "connected" not in c:
        return f"- {c.get('connections', '?')} concurrent connections: not measured ({c['error']})"
    rss = c.get("peak_rss_mib")
    lost, dup = c.get("lost"), c.get("duplicated")
    nothing_lost = lost == 0 and dup == 0 and c.get("ok")
    return (f"- {c['connected']:,} of {c['connections']:,} connections open together (logrelay "
            f"held {c.get('listener_connections_held')}), {c['records_per_connection']} records "
            f"each: {lost} lost, {dup} duplicated, {'verified' if c.get('ok') else 'NOT verified'}"
            f" (target nothing lost: {'MET' if nothing_lost else 'NOT MET'}); "
            f"{fmt(c.get('rate'), ',.0f')} records/s; peak RSS {rss} MiB (target < 64 MiB) "
            f"{'MET' if rss is not None and rss < 64 else 'NOT MET'}")


def build_rawsink() -> tuple[str, str]:
    """peers/rawsink.c built into target/bench/rawsink (again when the source
    is newer): returns (path, "") or ("", why the rawsink rows are skipped)."""
    src = os.path.join(PEERS, "rawsink.c")
    exe = os.path.join(REPO, "target", "bench", "rawsink")
    if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(src):
        return exe, ""
    cc = shlex.split(os.environ.get("CC", "")) or [
        c for c in (shutil.which("cc"), shutil.which("gcc"), shutil.which("clang")) if c][:1]
    if not cc:
        return "", "skipped: no C compiler (cc) for peers/rawsink.c"
    os.makedirs(os.path.dirname(exe), exist_ok=True)
    try:
        p = subprocess.run([*cc, "-O2", "-pthread", "-o", exe, src], stderr=subprocess.PIPE,
                           text=True)
    except OSError as e:
        return "", f"skipped: cannot run {cc[0]} for peers/rawsink.c ({e.strerror})"
    if p.returncode != 0:
        print(p.stderr, file=sys.stderr)
        return "", f"skipped: {os.path.basename(cc[0])} could not build peers/rawsink.c"
    return exe, ""


def layout_coverage(binary: str) -> str:
    """How much of the link-time function order (build.rs) this binary has
    (`layout/generate.py --check`): peak RSS depends on it."""
    tool = os.path.join(REPO, "layout", "generate.py")
    done = subprocess.run([sys.executable, tool, "--check", binary], capture_output=True,
                          text=True)
    if done.returncode != 0:
        return f"layout: not checked ({(done.stderr or done.stdout).strip()})"
    return f"layout: {done.stdout.strip()} (regenerate with layout/generate.py when low)."


def find_binary(args) -> str:
    if args.binary:
        return os.path.abspath(args.binary)
    exe = os.path.join(REPO, "target", "release", "logrelay")
    if args.build or not os.path.exists(exe):
        print("building the release binary (cargo build --release)...", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--bin", "logrelay"], cwd=REPO,
                       check=True)
    return exe


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="main scenario (+ no-op WASM) and its peers only, 1 repeat, "
                        "100k records")
    p.add_argument("--records", type=int, help="records per run (default 200000, quick 100000)")
    p.add_argument("--repeat", type=int, help="runs per row, median kept (default 3, quick 1)")
    p.add_argument("--binary", help="logrelay binary (default target/release/logrelay)")
    p.add_argument("--build", action="store_true", help="run cargo build --release first")
    p.add_argument("--only", default="", help="comma-separated listeners to run "
                   "(logrelay,cookbook,rawsink)")
    p.add_argument("--idle", type=int, default=None,
                   help="idle connections for the memory check (default 10000, quick 0 = skip)")
    p.add_argument("--latency", type=int, default=None, metavar="RECORDS",
                   help="records loaded during the p99 latency run of the main scenario "
                        "(latency.py; default 6000000, quick 1000000; 0 = skip)")
    p.add_argument("--conns", type=int, default=None, metavar="N",
                   help="concurrent connections each sending records (conns.py; "
                        "default 10000, 0 = skip)")
    p.add_argument("--conns-records", type=int, default=10, metavar="K",
                   help="records each of the --conns connections sends")
    p.add_argument("--json-out", default="", help="append e2e.py's JSON lines to this file")
    p.add_argument("--verbose", action="store_true", help="show e2e.py's progress on stderr")
    p.add_argument("--no-install", action="store_true",
                   help="skip the msgpack row instead of installing the Python msgpack "
                        "package into target/bench-python/ when it is missing")
    args = p.parse_args(argv)
    args.records = args.records or (100_000 if args.quick else 200_000)
    args.repeat = args.repeat or (1 if args.quick else 3)

    binary = find_binary(args)
    tmp = tempfile.mkdtemp(prefix="logrelay-bench-")
    try:
        keep = set(args.only.split(",")) if args.only else {"logrelay", "cookbook", "rawsink"}
        rows = [r for r in rows_for(args.quick) if r.listener in keep]
        # Rows that cannot run say why in the table (and on stderr).
        env, no_msgpack = {}, ""
        if any(r.encoding == "msgpack" for r in rows):
            env, no_msgpack = msgpack_env(install=not args.no_install)
        rawsink, no_rawsink = build_rawsink() if "rawsink" in keep else ("", "")
        for r in rows:
            r.na = (no_msgpack if r.encoding == "msgpack" else
                    no_rawsink if r.listener == "rawsink" else r.na)
            if r.na:
                print(f"{r.label()}: {r.na}", file=sys.stderr, flush=True)
        info = harness.machine_info()
        for r in rows:
            run_row(r, args, binary, tmp, rawsink, env)
        idle_n = args.idle if args.idle is not None else (0 if args.quick else 10_000)
        idle = idle_connections(binary, tmp, idle_n) if idle_n else None
        import conns as conns_bench  # noqa: E402  (benches/e2e/conns.py)
        import latency as latency_bench  # noqa: E402  (benches/e2e/latency.py)
        with_logrelay = not args.only or "logrelay" in args.only.split(",")
        # Enough load for a few hundred probes (one per 10 ms) in the full run.
        lat_n = args.latency if args.latency is not None else (
            1_000_000 if args.quick else 6_000_000)
        lat = None
        if lat_n and with_logrelay:
            print(f"== latency (main scenario, {lat_n} records)", file=sys.stderr, flush=True)
            cfg = logrelay_config(Row("logrelay"))
            try:
                lat = latency_bench.measure(
                    binary, cfg, lat_n, procs=4,
                    flush_ms=cfg["outputs"]["file"].get("flush_ms", 100),
                    verify_args=["--check-format", "cookbook"], verbose=args.verbose)
            except (RuntimeError, OSError) as e:
                lat = {"error": str(e)}
        # The same at a fixed load of 800,000 records/s (the main scenario's
        # full rate before 66e315b): the full-rate figure saturates both
        # vCPUs on a 2-vCPU machine, and its tail is then CPU scheduling.
        lat_fixed = None
        if lat_n and with_logrelay and not args.quick:
            print("== latency at 800,000 records/s (4,000,000 records)", file=sys.stderr,
                  flush=True)
            try:
                lat_fixed = latency_bench.measure(
                    binary, cfg, 4_000_000, procs=4,
                    flush_ms=cfg["outputs"]["file"].get("flush_ms", 100),
                    verify_args=["--check-format", "cookbook"], verbose=args.verbose,
                    rate=800_000)
            except (RuntimeError, OSError) as e:
                lat_fixed = {"error": str(e)}
        conns_n = args.conns if args.conns is not None else 10_000
        many = None
        if conns_n and with_logrelay:
            print(f"== {conns_n} connections x {args.conns_records} records", file=sys.stderr,
                  flush=True)
            try:
                many = conns_bench.measure(binary, logrelay_config(Row("logrelay")),
                                           conns_n, args.conns_records,
                                           verbose=args.verbose)
            except (RuntimeError, OSError) as e:
                many = {"connections": conns_n, "error": str(e)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}; "
          f"date: {info['date']}; {args.records} records per run, median of {args.repeat}; "
          f"mode raw (precomputed frames).")
    print("other_cpu_s: CPU-seconds the rest of the machine used during the run "
          "(high = noisy figures).")
    print(f"{layout_coverage(binary)}\n")
    print(table(rows, args))
    targets = check_targets(rows)
    if idle:
        if "error" in idle:
            targets.append(f"- peak RSS with {idle_n} idle connections: not measured "
                           f"({idle['error']})")
        else:
            rss = idle["peak_rss_mib"]
            targets.append(f"- peak RSS with {idle['connections']} idle connections: {rss} MiB "
                           f"(target < 32 MiB) {'MET' if rss < 32 else 'NOT MET'}")
    if lat:
        targets.append(latency_target(lat))
    if lat_fixed:
        targets.append(latency_target(lat_fixed).replace("- p99 latency under load",
                                                         "- p99 latency under a fixed load", 1))
    if many:
        targets.append(conns_target(many))
    if targets:
        print("\nIssue 23 targets (main scenario: tcp, 4 senders, pickle, cookbook format):")
        print("\n".join(targets))
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(json.dumps({"machine": info, "rows": [r.__dict__ for r in rows],
                                "idle": idle, "latency": lat, "conns": many}) + "\n")
    ok = all(r.summary.get("runs_ok") == r.summary.get("runs") for r in rows if not r.na)
    ok = ok and (lat is None or lat.get("verify_ok")) and (many is None or many.get("ok"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
