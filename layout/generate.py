#!/usr/bin/env python3
"""Regenerate layout/hot-functions.txt: the functions a running logrelay
executes, hottest first, for the linker to place together (build.rs).

    python3 layout/generate.py            # builds --release, then profiles it
    python3 layout/generate.py --bin PATH # profile this binary instead
    python3 layout/generate.py --faults   # only the page-fault pass (below)
    python3 layout/generate.py --check PATH
                                          # how many listed functions PATH has

Why: the binary's text is 16 MiB, and the 1-1.3 MiB it runs was spread over
it, so the kernel's 64 KiB fault-around made about 5 MiB of it resident.
Listed together, 1.4-1.8 MiB is (docs/performance.md has the numbers).

How: logrelay under valgrind's callgrind (--demangle=no, so the names are the
linker's), once per group of GROUPS below, fed records by
tests/tools/loadgen.py; every function of the binary that ran is listed, a
group after the other, each by instructions executed (most first). A stale
list is harmless: lld skips names it does not find, and the functions it
does not list keep their usual order. Regenerate after updating the
toolchain or dependencies (their symbol names carry hashes).

Then a page-fault pass: callgrind runs one thread at a time, so what only
real concurrency runs (a contended mutex, tokio's yield and defer paths)
and the C start-up files (`_start`, `frame_dummy`) are not in its list, and
each of those functions kept a cluster of pages resident far from the rest
(0.3-0.5 MiB in all). The pass runs the release build at full speed under
`perf record -e page-faults` (1, 4 and 8 senders), puts every function that
took a page fault outside the listed ones at the head of the list, builds
again and repeats until a run faults in no unlisted function (a fault maps
a whole folio, so one pass hides its neighbours from the next).

Needs valgrind (Debian: apt-get install valgrind), nm (binutils) and, for
the page-fault pass, perf (linux-perf; without it the pass is skipped).
"""
import argparse
import bisect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIST = os.path.join(ROOT, "layout", "hot-functions.txt")
LOADGEN = os.path.join(ROOT, "tests", "tools", "loadgen.py")
NOOP_WASM = os.path.join(ROOT, "tests", "fixtures", "wasm", "noop.wat")
# benches/e2e's helpers: a free port.
sys.path.insert(0, os.path.join(ROOT, "benches", "e2e"))
import harness  # noqa: E402  (benches/e2e/harness.py)
TEMPLATE = "%(asctime)s %(levelname)-8s %(name)s %(process)d %(message)s"


def wait_listening(port, proc, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"logrelay exited early ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"logrelay did not listen on 127.0.0.1:{port} in {timeout:.0f} s")


def wait_quiet(directory, timeout=300.0):
    """Until the output files stop growing (callgrind is ~50x slower)."""
    prev, end = -1, time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(1.0)
        size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
        if size > 0 and size == prev:
            return
        prev = size


def python_env():
    """loadgen's environment: the packages the tests install (msgpack), if any."""
    env = dict(os.environ)
    base = os.path.join(ROOT, "target", "test-python")
    extra = [os.path.join(base, d) for d in sorted(os.listdir(base))] if os.path.isdir(base) else []
    env["PYTHONPATH"] = os.pathsep.join(extra + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def loadgen(*args):
    subprocess.run([sys.executable, LOADGEN, "--no-check", *args], check=True,
                   stdout=subprocess.DEVNULL, env=python_env())


# The list is built in three groups, each ranked by cost, so that what the
# common deployment runs comes first and stays together: (1) SocketHandler
# over TCP into a rotating text file; (2) the other inputs, decoders and the
# JSON lines encoder; (3) a WASM filter (wasmtime compiles the module at
# start-up: about 1.4 MiB of code).
GROUPS = ("main", "inputs", "wasm")


def main_config(out, port, max_bytes):
    """The main group's deployment: TCP pickle on `port` into a rotating
    text file in `out`."""
    return {"inputs": {"pickle": {"type": "tcp", "address": f"127.0.0.1:{port}",
                                  "decoder": "pickle"}},
            "outputs": {"text": {"type": "file", "path": os.path.join(out, "app.log"),
                                 "max_bytes": max_bytes, "backup_count": 2,
                                 "format": TEMPLATE}},
            "routes": [{"to": ["text"]}]}


def write_config(work, config):
    cfg = os.path.join(work, "listener.json")
    with open(cfg, "w") as f:
        json.dump(config, f)
    return cfg


def profile(binary, work, group):
    work = os.path.join(work, group)
    out = os.path.join(work, "out")
    os.makedirs(out)
    ports = {name: harness.free_port() for name in ("pickle", "json", "msgpack", "udp")}
    unix = os.path.join(work, "app.sock")
    config = main_config(out, ports["pickle"], 1 << 20)
    inputs = config["inputs"]
    if group == "inputs":
        inputs.update({
            "json": {"type": "tcp", "address": f"127.0.0.1:{ports['json']}", "decoder": "json"},
            "msgpack": {"type": "tcp", "address": f"127.0.0.1:{ports['msgpack']}",
                        "decoder": "msgpack"},
            "unix": {"type": "unix", "path": unix, "decoder": "pickle"},
            "udp": {"type": "udp", "address": f"127.0.0.1:{ports['udp']}", "decoder": "pickle"},
        })
        config["outputs"]["jsonl"] = {"type": "file", "path": os.path.join(out, "app.jsonl"),
                                      "max_bytes": 1 << 20, "backup_count": 2,
                                      "encoding": "json"}
        config["routes"].append({"from": ["pickle", "json"], "to": ["jsonl"]})
    if group == "wasm":
        config["filters"] = {"noop": {"type": "wasm", "path": NOOP_WASM}}
        config["routes"] = [{"to": ["text"], "filters": ["noop"]}]
    cfg = write_config(work, config)
    cg_out = os.path.join(work, "callgrind.out")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={cg_out}",
         binary, "--log-level", "warn", "--config", cfg],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(ports["pickle"], proc)
        n = "20000"
        loadgen("--tcp", f"127.0.0.1:{ports['pickle']}", "--records", n, "--procs", "2")
        if group == "inputs":
            loadgen("--unix", unix, "--records", n)
            loadgen("--tcp", f"127.0.0.1:{ports['json']}", "--records", n, "--encoding", "json")
            loadgen("--tcp", f"127.0.0.1:{ports['msgpack']}", "--records", n,
                    "--encoding", "msgpack")
            loadgen("--udp", f"127.0.0.1:{ports['udp']}", "--records", "2000", "--rate", "2000")
        wait_quiet(out)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    return cg_out


def functions_by_cost(cg_out, binary):
    """(name, self instructions) of the binary's functions in a callgrind file."""
    objects, names, cost = {}, {}, {}
    in_binary, current = False, None
    real = os.path.realpath(binary)
    spec = re.compile(r"^(ob|fn|cob|cfn)=\((\d+)\)(?: (.*))?$")
    calls = False
    with open(cg_out, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = spec.match(line)
            if m:
                kind, idx, name = m.groups()
                if kind in ("ob", "cob"):
                    if name:
                        objects[idx] = name
                    if kind == "ob":
                        in_binary = os.path.realpath(objects.get(idx, "")) == real
                elif kind in ("fn", "cfn"):
                    if name:
                        names[idx] = name
                    if kind == "fn":
                        current = names[idx] if in_binary else None
                        if current is not None:
                            cost.setdefault(current, 0)
                continue
            if line.startswith("calls="):
                calls = True  # the next cost line is the call's inclusive cost
                continue
            if line[:1].isdigit() or line[:1] in ("+", "-", "*"):
                if calls:
                    calls = False
                    continue
                parts = line.split()
                if current is not None and len(parts) >= 2 and parts[1].isdigit():
                    cost[current] += int(parts[1])
    # Addresses without a symbol (PLT stubs, the loader's view) are not names
    # the linker can place.
    return sorted(((n, c) for n, c in cost.items() if not n.startswith(("0x", "("))),
                  key=lambda nc: (-nc[1], nc[0]))


def child_of(pid, timeout=10.0):
    """The first child process of `pid` (perf's, logrelay)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"perf (pid {pid}) started no logrelay")


def text_symbols(binary):
    """(address, name) of the functions in the binary's .text, sorted, sized
    or not (the C start-up files' local functions have no size), and where
    .text ends. `.init`/`.fini` are sections of their own: not placeable."""
    sections = subprocess.run(["readelf", "-SW", binary], check=True, capture_output=True,
                              text=True).stdout
    m = re.search(r"\]\s+\.text\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", sections)
    if not m:
        sys.exit(f"{binary} has no .text section")
    start, end = int(m.group(1), 16), int(m.group(1), 16) + int(m.group(2), 16)
    syms = sorted((a, n) for a, n in function_symbols(binary) if start <= a < end)
    return syms, end


def faulted_functions(binary, work):
    """Functions of `binary` that took a page fault in real runs."""
    real = os.path.realpath(binary)
    syms, text_end = text_symbols(real)
    addrs = [a for a, _ in syms]
    found = set()
    for senders in ("1", "4", "8"):
        run = os.path.join(work, f"faults-{senders}")
        out = os.path.join(run, "out")
        os.makedirs(out)
        port = harness.free_port()
        cfg = write_config(run, main_config(out, port, 10 << 20))
        data = os.path.join(run, "perf.data")
        perf = subprocess.Popen(
            ["perf", "record", "-q", "-e", "page-faults", "-c", "1", "-d", "-o", data,
             real, "--log-level", "warn", "--config", cfg],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            logrelay = child_of(perf.pid)
            wait_listening(port, perf)
            loadgen("--tcp", f"127.0.0.1:{port}", "--records", "300000", "--procs", senders)
            time.sleep(0.5)
            os.kill(logrelay, signal.SIGTERM)
            perf.wait(timeout=60)
        finally:
            if perf.poll() is None:
                perf.kill()
                perf.wait()
        script = subprocess.run(
            ["perf", "script", "-i", data, "--show-mmap-events", "--no-demangle", "-F", "addr"],
            check=True, capture_output=True, text=True).stdout
        base = None
        for line in script.splitlines():
            # The first mapping of the binary, at file offset 0: its load address.
            if "PERF_RECORD_MMAP" in line and line.rstrip().endswith(real) and " @ 0 " in line:
                base = int(line.split("[", 1)[1].split("(", 1)[0], 16)
                break
        if base is None:
            sys.exit(f"perf recorded no mapping of {real}")
        for line in script.splitlines():
            try:
                va = int(line.strip(), 16) - base
            except ValueError:
                continue
            if addrs and addrs[0] <= va < text_end:
                found.add(syms[bisect.bisect_right(addrs, va) - 1][1])
    return found


def fault_pass(names):
    """Rebuild and add faulted functions at the head of `names` until none
    is new. Returns the names added."""
    added = []
    binary = os.path.join(ROOT, "target", "release", "logrelay")
    for _ in range(6):
        write_list(names)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        with tempfile.TemporaryDirectory(prefix="logrelay-faults-") as work:
            new = sorted(faulted_functions(binary, work) - set(names))
        print(f"page-fault pass: {len(new)} unlisted functions faulted"
              + (f": {', '.join(new)}" if new else ""))
        if not new:
            return added
        added += new
        names[:0] = new
    write_list(names)
    print("page-fault pass: still finding functions after 6 rounds; stopped")
    return added


def write_list(names):
    """Write the list, unless it holds these names already (a new mtime
    reruns build.rs, which recompiles the crate)."""
    text = "".join(n + "\n" for n in names)
    try:
        with open(LIST) as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(LIST, "w") as f:
        f.write(text)


def function_symbols(binary):
    """(address, name) of every function symbol `binary` defines (nm)."""
    try:
        out = subprocess.run(["nm", "--defined-only", binary], check=True, capture_output=True,
                             text=True).stdout
    except FileNotFoundError:
        sys.exit("nm is not installed (Debian: apt-get install binutils)")
    except subprocess.CalledProcessError as e:
        sys.exit(f"nm cannot read {binary}: {e.stderr.strip()}")
    return [(int(f[0], 16), f[2]) for f in (line.split() for line in out.splitlines())
            if len(f) == 3 and f[1] in "tTwW"]


def defined_text_symbols(binary):
    return {name for _, name in function_symbols(binary)}


def read_list():
    with open(LIST) as f:
        return [line.strip() for line in f if line.strip()]


def check(binary):
    listed = read_list()
    have = defined_text_symbols(binary)
    found = sum(1 for name in listed if name in have)
    print(f"{found} of {len(listed)} listed functions are in {binary} "
          f"({100.0 * found / max(1, len(listed)):.0f}%)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="profile this logrelay binary (default: build --release)")
    ap.add_argument("--check", metavar="BIN", help="report how much of the list BIN has")
    ap.add_argument("--faults", action="store_true",
                    help="only the page-fault pass, on the current list")
    args = ap.parse_args()
    if args.check:
        check(args.check)
        return
    if args.faults:
        if shutil.which("perf") is None:
            sys.exit("perf is not installed (Debian: apt-get install linux-perf)")
        fault_pass(read_list())
        return
    for tool in ("valgrind", "nm"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: apt-get install valgrind binutils)")
    binary = args.bin
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "logrelay")
    have = defined_text_symbols(binary)
    names, seen = [], set()
    with tempfile.TemporaryDirectory(prefix="logrelay-layout-") as work:
        for group in GROUPS:
            for name, _ in functions_by_cost(profile(binary, work, group), binary):
                if name in have and name not in seen:
                    seen.add(name)
                    names.append(name)
    write_list(names)
    print(f"wrote {len(names)} functions to {os.path.relpath(LIST, ROOT)}")
    if args.bin is not None:
        print("page-fault pass skipped (--bin): run --faults to add it")
    elif shutil.which("perf") is None:
        print("page-fault pass skipped: perf is not installed (Debian: linux-perf)")
    else:
        fault_pass(names)


if __name__ == "__main__":
    main()
