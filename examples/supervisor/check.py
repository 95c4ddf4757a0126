"""Check that every record a client.py run made the app log is in run/app.log* exactly once.

    python3 check.py --run-id RUN --requests N [--wait 60] ['run/app.log*' ...]

1. Waits (at most --wait seconds) until all N * 4 records of the run are in
   the files, rotated files included.
2. Runs tests/tools/verify.py on them: each record exactly once, intact (CRC of
   every message, the multi-line tracebacks, no interleaved lines), nothing
   out of range, and -- with --strict -- no line that belongs to no record.
3. Checks each line of the run against the cookbook's format,
   '%(asctime)s %(levelname)-8s %(name)-15s %(process)-6s %(message)s':
   level, logger name and pid (the worker's, which the message also carries),
   and, with --since, that asctime (local time, as Python's) falls between
   --since and now: a listener that garbles timestamps fails here.

The last stdout line is JSON; exit status 0 only if everything checked out.
Standard library only.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VERIFY = HERE.parent.parent / "tests" / "tools" / "verify.py"
RECORD_RE = re.compile(r"rid=(\S+) p=(\d+) seq=(\d+) lv=(\S+) lg=(\S+) exc=[01] pid=(\d+) ")
ASCTIME_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}$")


def run_verify(verify, files, run_id, procs, records):
    """verify.py's JSON verdict (None if it could not run, e.g. a file rotated away under it)."""
    cmd = [sys.executable, str(verify), *files, "--run-id", run_id, "--procs", str(procs),
           "--records", str(records), "--strict"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]), proc.stderr
    except (IndexError, ValueError):
        return None, proc.stderr


def asctime_epoch(text):
    """'2024-05-01 12:00:00,123' (local time) as seconds since the epoch, or None."""
    try:
        return time.mktime(time.strptime(text[:19], "%Y-%m-%d %H:%M:%S")) + int(text[20:]) / 1000
    except (ValueError, OverflowError):
        return None


def check_format(files, run_id, since=None):
    """Count this run's record lines, those whose prefix is wrong, and records per pid."""
    lines = bad = bad_time = 0
    until = time.time() + 2
    pids, samples = Counter(), []
    for path in sorted({os.path.realpath(p) for pat in files for p in glob.glob(pat)}):
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for raw in f:
                m = RECORD_RE.search(raw)
                if not m or m.group(1) != run_id:
                    continue
                lines += 1
                level, name, pid = m.group(4), m.group(5), m.group(6)
                prefix = raw[:m.start()]
                want = f" {level:<8} {name:<15} {pid:<6} "
                if not (ASCTIME_RE.match(prefix[:23]) and prefix[23:] == want):
                    bad += 1
                    if len(samples) < 5:
                        samples.append(f"{os.path.basename(path)}: {raw.rstrip()[:200]!r}")
                elif since is not None:
                    t = asctime_epoch(prefix[:23])
                    if t is None or not since - 2 <= t <= until:
                        bad_time += 1
                        if len(samples) < 5:
                            samples.append(f"{os.path.basename(path)}: asctime not between "
                                           f"--since and now: {raw.rstrip()[:200]!r}")
                pids[pid] += 1
    return lines, bad, bad_time, pids, samples


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=[str(HERE / "run" / "app.log*")],
                    help="log files or globs (default: run/app.log* next to this script)")
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--requests", type=int, required=True, help="requests client.py made")
    ap.add_argument("--per-request", type=int, default=4, help="records per request (main.py)")
    ap.add_argument("--wait", type=float, default=0.0,
                    help="seconds to wait for the last record to arrive (default: no wait)")
    ap.add_argument("--since", type=float,
                    help="time (epoch seconds) the run started: asctime must not be earlier")
    ap.add_argument("--verify", default=str(DEFAULT_VERIFY), help="path of verify.py")
    args = ap.parse_args(argv)
    if not Path(args.verify).is_file():
        print(f"check: error: verify.py not found at {args.verify}", file=sys.stderr)
        return 2
    procs, expected = args.per_request, args.per_request * args.requests

    # 1. Poll until every record is there (or the deadline passes).
    t0 = time.monotonic()
    deadline = t0 + args.wait
    result = None
    while True:
        result, _ = run_verify(args.verify, args.files, args.run_id, procs, args.requests * procs)
        if result is not None and result["missing"] == 0:
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    waited = time.monotonic() - t0

    # 2. The verdict, on files that no longer change.
    time.sleep(0.3)
    result, details = run_verify(args.verify, args.files, args.run_id, procs, expected)
    if result is None:
        print(details, file=sys.stderr, end="")
        print("check: error: verify.py gave no verdict (no files?)", file=sys.stderr)
        print(json.dumps({"run_id": args.run_id, "expected": expected, "ok": False}))
        return 1
    if not result["ok"]:
        print(details, file=sys.stderr, end="")

    # 3. The cookbook format, line by line.
    lines, bad, bad_time, pids, samples = check_format(args.files, args.run_id, args.since)
    for s in samples:
        print(f"check: bad line: {s}", file=sys.stderr)
    ok = result["ok"] and bad == 0 and bad_time == 0 and lines == result["found"] + result["duplicated"]
    print(f"check: run {args.run_id}: {result['found']}/{expected} records found in "
          f"{result['files']} file(s)" + (f" (waited {waited:.1f} s)" if args.wait else "")
          + f"; missing {result['missing']}, "
          f"duplicated {result['duplicated']}, corrupt {result['corrupt']}, "
          f"foreign lines {result['foreign_lines']}, badly formatted {bad}, "
          f"bad timestamps {bad_time if args.since is not None else 'unchecked'}; "
          f"{len(pids)} worker pid(s): " + ", ".join(f"{p}={n}" for p, n in sorted(pids.items()))
          + (" -- OK" if ok else " -- FAILED"), file=sys.stderr)
    print(json.dumps({
        "run_id": args.run_id, "expected": expected, "found": result["found"],
        "missing": result["missing"], "duplicated": result["duplicated"],
        "corrupt": result["corrupt"], "unexpected": result["unexpected"],
        "foreign_lines": result["foreign_lines"], "other_runs": result["other_runs"],
        "bad_format": bad, "bad_time": bad_time, "files": result["files"], "workers": len(pids),
        "wait_seconds": round(waited, 2), "ok": ok,
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
