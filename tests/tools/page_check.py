#!/usr/bin/env python3
"""Drive logrelay's status page in a real headless Chromium.

Chromium is driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages separated by NUL bytes on file
descriptors 3 and 4), so nothing beyond the standard library is needed.
Records come from real logging.handlers.SocketHandler senders.

check mode (the test):
  page_check.py check --page URL --tcp HOST:PORT [--screenshot FILE]
  1. two SocketHandler senders connect and log; the page must show the
     input and both open connections, and the input's record count must rise;
  2. a record logged after the page opened must appear in the live tail;
  3. with the logger filter set to "payments", a payments record appears
     and a record of another logger logged at the same time does not;
  4. a full-page screenshot is written (for docs/operations.md).
soak mode (the memory measurement):
  page_check.py soak --page URL --tcp HOST:PORT --seconds N --rate 10000
  tails everything while sender processes log RATE records/s, and prints
  the page's JS heap, DOM node count and the renderer's RSS every 30 s.

The last line on stdout is a JSON summary. Exit status: 0 ok, 1 a check
failed, 2 Chromium is missing or would not start.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

INSTALL_HINT = (
    "Chromium is needed for the status page test and was not found "
    "(looked for $CHROMIUM, chromium, chromium-browser, google-chrome). "
    "Install it with: apt-get update && apt-get install -y chromium"
)


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env if shutil.which(env) or os.path.exists(env) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium and one page, over --remote-debugging-pipe."""

    def __init__(self, exe: str, width: int = 1400, height: int = 1000):
        self.profile = tempfile.mkdtemp(prefix="logrelay-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
            f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
            "--remote-debugging-pipe", "about:blank",
        ]

        def fds():
            # Move both ends out of the way first: either may be 3 or 4.
            os.dup2(to_child_r, 100)
            os.dup2(from_child_w, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=fds, close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next = 0
        self._lock = threading.Lock()
        self.session = None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next((t for t in targets if t["type"] == "page"), None)
        if page is None:
            page = {"targetId": self.call("Target.createTarget", url="about:blank")["targetId"]}
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Performance.enable")

    def call(self, method: str, timeout: float = 30.0, **params):
        with self._lock:
            self._next += 1
            mid = self._next
            msg = {"id": mid, "method": method, "params": params}
            if self.session and not method.startswith("Target."):
                msg["sessionId"] = self.session
            os.write(self._w, json.dumps(msg).encode() + b"\0")
            deadline = time.monotonic() + timeout
            while True:
                while b"\0" in self._buf:
                    raw, self._buf = self._buf.split(b"\0", 1)
                    reply = json.loads(raw)
                    if reply.get("id") == mid:
                        if "error" in reply:
                            raise RuntimeError(f"{method}: {reply['error']}")
                        return reply.get("result", {})
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer to {method} in {timeout} s")
                import select
                ready, _, _ = select.select([self._r], [], [], 0.5)
                if ready:
                    chunk = os.read(self._r, 1 << 20)
                    if not chunk:
                        raise RuntimeError("Chromium closed the DevTools pipe")
                    self._buf += chunk

    def eval(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, what: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.eval(expr)
                if last:
                    return last
            except RuntimeError as e:
                last = str(e)
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")

    def renderer_rss_kib(self) -> int:
        """Sum of RSS of the renderer processes under this browser."""
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
                if b"--type=renderer" not in cmd or self.profile.encode() not in cmd:
                    continue
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                continue
        return total

    def screenshot(self, path: str):
        height = int(self.eval("Math.ceil(document.documentElement.scrollHeight)") or 1000)
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=min(height, 4000),
                  deviceScaleFactor=1, mobile=False)
        time.sleep(1.2)  # one more snapshot, charts redrawn at the new size
        import base64
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        self.call("Emulation.clearDeviceMetricsOverride")

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def sender(host: str, port: int, name: str) -> logging.Logger:
    """A logger with its own SocketHandler (its own connection)."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.handlers.SocketHandler(host, port)
    logger.addHandler(handler)
    return logger


def check(args, browser: Browser) -> dict:
    host, port = args.tcp.rsplit(":", 1)
    port = int(port)
    web = sender(host, port, "web.checkout")
    pay = sender(host, port, "payments.api")
    for i in range(5):
        web.info("request %d served", i)
        pay.warning("card declined for order %d", i)
    stop = threading.Event()

    def background():
        i = 0
        while not stop.is_set():
            web.info("GET /checkout/%d 200", i)
            if i % 3 == 0:
                pay.warning("card declined for order %d", i)
            if i % 17 == 0:
                pay.error("gateway timeout for order %d", i)
            i += 1
            time.sleep(0.05)

    t = threading.Thread(target=background, daemon=True)
    t.start()
    try:
        browser.call("Page.navigate", url=args.page)
        # 1. the input and both connections appear; the count rises.
        browser.wait("document.querySelectorAll('tr.input').length > 0", "the inputs table")
        browser.wait("document.querySelectorAll('tr.conn').length >= 2",
                     "two open connections in the inputs table")
        first = browser.wait("Number(document.querySelector('tr.input').dataset.received)",
                             "a record count")
        browser.wait(f"Number(document.querySelector('tr.input').dataset.received) > {first}",
                     "the record count to rise")
        peers = browser.eval("Array.from(document.querySelectorAll('tr.conn')).map(r => r.dataset.peer)")
        # 2. a record logged now appears in the tail.
        browser.wait("window.logrelay.tail.open", "the tail stream to open")
        marker = "after-open-" + uuid.uuid4().hex[:8]
        web.warning("marker %s", marker)
        browser.wait(f"document.getElementById('tail').textContent.includes('{marker}')",
                     "the record logged after the page opened to appear in the tail")
        # 3. the logger filter hides other loggers.
        browser.eval("""(() => { const f = document.getElementById('f-logger');
            f.value = 'payments'; f.dispatchEvent(new Event('input'));
            document.getElementById('clear').click(); return true; })()""")
        time.sleep(0.4)
        browser.wait("window.logrelay.tail.open", "the filtered tail stream to open")
        time.sleep(0.3)
        browser.eval("document.getElementById('clear').click(), true")
        pay_marker = "pay-" + uuid.uuid4().hex[:8]
        web_marker = "web-" + uuid.uuid4().hex[:8]
        web.error("marker %s", web_marker)
        pay.error("marker %s", pay_marker)
        browser.wait(f"document.getElementById('tail').textContent.includes('{pay_marker}')",
                     "the payments record in the filtered tail")
        time.sleep(0.5)
        text = browser.eval("document.getElementById('tail').textContent")
        loggers = set(browser.eval(
            "Array.from(document.querySelectorAll('.tail-row')).map(r => r.dataset.logger)"))
        if web_marker in text or any(not (l == "payments" or l.startswith("payments.")) for l in loggers):
            raise AssertionError(f"the logger filter let other loggers through: {sorted(loggers)}")
        # Expanding a line shows its fields.
        nfields = browser.eval("""(() => { const r = document.querySelector('.tail-row');
            r.click(); return r.querySelectorAll('.fields tr').length; })()""")
        if not nfields or nfields < 10:
            raise AssertionError(f"an expanded tail line shows {nfields} fields")
        browser.eval("document.querySelector('.tail-row').click(), true")
        # Pause and resume.
        browser.eval("document.getElementById('pause').click(), true")
        held = "held-" + uuid.uuid4().hex[:8]
        pay.error("marker %s", held)
        time.sleep(0.8)
        if browser.eval(f"document.getElementById('tail').textContent.includes('{held}')"):
            raise AssertionError("a record appeared while the tail was paused")
        browser.eval("document.getElementById('pause').click(), true")
        browser.wait(f"document.getElementById('tail').textContent.includes('{held}')",
                     "the record held while paused to appear on resume")
        # Show some history in the charts and everything in the tail for the screenshot.
        browser.eval("""(() => { const f = document.getElementById('f-logger');
            f.value = ''; f.dispatchEvent(new Event('input')); return true; })()""")
        time.sleep(args.settle)
        page_bytes = browser.eval("document.documentElement.outerHTML.length")
        if args.screenshot:
            browser.screenshot(args.screenshot)
        return {"ok": True, "peers": peers, "fields_shown": nfields, "page_chars": page_bytes}
    finally:
        stop.set()
        t.join()


def blast(host: str, port: int, rate: float, seconds: float, procs: int):
    """A sender process: `rate` records/s through a real SocketHandler."""
    log = sender(host, port, f"load.p{os.getpid()}")
    per_tick = max(1, int(rate / 100))
    end = time.monotonic() + seconds
    n = 0
    next_tick = time.monotonic()
    while time.monotonic() < end:
        for _ in range(per_tick):
            log.info("load record %d with a little payload to look like a real line", n)
            n += 1
        next_tick += 0.01
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(json.dumps({"sent": n}), flush=True)


def soak(args, browser: Browser) -> dict:
    host, port = args.tcp.rsplit(":", 1)
    port = int(port)
    browser.call("Page.navigate", url=args.page)
    browser.wait("window.logrelay.tail.open", "the tail stream to open")
    procs = []
    per = args.rate / args.procs
    for _ in range(args.procs):
        p = multiprocessing.Process(target=blast, args=(host, port, per, args.seconds, args.procs))
        p.start()
        procs.append(p)
    samples = []
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        metrics = {m["name"]: m["value"] for m in browser.call("Performance.getMetrics")["metrics"]}
        tail = browser.eval("window.logrelay.tail")
        sample = {
            "t": round(elapsed),
            "js_heap_used_mib": round(metrics.get("JSHeapUsedSize", 0) / 1048576, 1),
            "js_heap_total_mib": round(metrics.get("JSHeapTotalSize", 0) / 1048576, 1),
            "dom_nodes": int(metrics.get("Nodes", 0)),
            "renderer_rss_mib": round(browser.renderer_rss_kib() / 1024, 1),
            "tail_received": tail["received"], "tail_shown": tail["shown"],
            "tail_skipped": tail["skipped"], "tail_not_shown": tail["dropped"],
        }
        samples.append(sample)
        print(json.dumps(sample), flush=True)
        if elapsed >= args.seconds:
            break
        time.sleep(min(30, max(1, args.seconds - elapsed)))
    for p in procs:
        p.join()
    first, last = samples[min(1, len(samples) - 1)], samples[-1]
    return {"ok": True, "seconds": args.seconds, "rate": args.rate, "first": first, "last": last,
            "max_js_heap_used_mib": max(s["js_heap_used_mib"] for s in samples),
            "max_renderer_rss_mib": max(s["renderer_rss_mib"] for s in samples)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("check", "soak"))
    p.add_argument("--page", required=True, help="the status page URL (with ?token= if needed)")
    p.add_argument("--tcp", required=True, help="HOST:PORT of a pickle TCP input")
    p.add_argument("--screenshot", help="write a full-page PNG here (check mode)")
    p.add_argument("--settle", type=float, default=4.0, help="seconds before the screenshot")
    p.add_argument("--seconds", type=float, default=300, help="soak duration")
    p.add_argument("--rate", type=float, default=10000, help="soak records/s")
    p.add_argument("--procs", type=int, default=2, help="soak sender processes")
    args = p.parse_args()
    exe = find_chromium()
    if exe is None:
        print(INSTALL_HINT, file=sys.stderr)
        print(json.dumps({"ok": False, "error": INSTALL_HINT}))
        return 2
    try:
        browser = Browser(exe)
    except Exception as e:  # noqa: BLE001
        msg = f"Chromium ({exe}) would not start: {e}. {INSTALL_HINT}"
        print(msg, file=sys.stderr)
        print(json.dumps({"ok": False, "error": msg}))
        return 2
    try:
        result = check(args, browser) if args.mode == "check" else soak(args, browser)
    except AssertionError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return 1
    finally:
        browser.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
