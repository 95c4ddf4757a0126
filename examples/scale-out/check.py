"""Check that every record the senders logged is in the central files.

    python3 check.py RUN_DIR TAG:N [TAG:N ...] [--wait SECONDS]

Reads RUN_DIR/central*/logs/app.log*, finds "TAG <i>" at the end of each
line, and waits (up to --wait) until every i < N of every TAG is there.
Prints how many were found, missing and duplicated (a duplicate is
allowed: delivery is at-least-once); exits 1 if any is missing.
"""
import glob
import os
import sys
import time

args = sys.argv[1:]
wait = 120.0
if "--wait" in args:
    i = args.index("--wait")
    wait = float(args[i + 1])
    del args[i : i + 2]
run, wants = args[0], [(t, int(n)) for t, n in (a.split(":") for a in args[1:])]


def scan():
    seen = {}
    for path in glob.glob(os.path.join(run, "central*", "logs", "app.log*")):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rsplit(" ", 2)
                if len(parts) == 3:
                    key = (parts[1], parts[2].strip())
                    seen[key] = seen.get(key, 0) + 1
    return seen


deadline = time.time() + wait
while True:
    seen = scan()
    missing = [(t, i) for t, n in wants for i in range(n) if (t, str(i)) not in seen]
    if not missing or time.time() > deadline:
        break
    time.sleep(1)
total = sum(n for _, n in wants)
dups = sum(k - 1 for k in seen.values() if k > 1)
print(f"check: {total - len(missing)}/{total} records written, {len(missing)} missing, {dups} duplicates")
if missing:
    print(f"check: first missing: {missing[:10]}")
    sys.exit(1)
