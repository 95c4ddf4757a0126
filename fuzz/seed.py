#!/usr/bin/env python3
"""Write the seed corpora for the fuzz targets into corpus/<target>/.

pickle:  every frame of tests/fixtures/pickle/frames.bin (real
         SocketHandler pickles, protocols 0-5), without its length prefix.
framing: a control byte (see fuzz_targets/framing.rs) then a few of those
         length-prefixed frames, or JSON lines.
json, msgpack: the bytes the logrelay package's handlers (python/logrelay/handlers.py) send for a
         few real LogRecords (plain, exception, unicode, extra= with nested
         containers, big and odd numbers, bytes), and one record with lone
         surrogates as `json.dumps` escapes them by default; msgpack needs
         the `msgpack` package.

Run from fuzz/: `python3 seed.py`.
"""

import json
import logging
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from logrelay import handlers as logrelay_handlers  # noqa: E402


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pickle_frames():
    path = os.path.join(HERE, "..", "tests", "fixtures", "pickle", "frames.bin")
    d = open(path, "rb").read()
    i, out = 0, []
    while i < len(d):
        (n,) = struct.unpack(">L", d[i:i + 4])
        out.append(d[i:i + 4 + n])
        i += 4 + n
    return out


class Capture(logging.Handler):
    def __init__(self):
        logging.Handler.__init__(self)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def records():
    log = logging.getLogger("seed.app")
    log.setLevel(1)
    log.propagate = False
    cap = Capture()
    log.addHandler(cap)
    log.info("hello %s", "world")
    try:
        int("x")
    except ValueError:
        log.exception("failed %r", "x")
    log.warning("emoji \U0001F600 \u65e5\u672c tab\t nl\n quote\" back\\ nul\x00",
                extra={"\u043a\u043b\u044e\u0447": "\u0437\u043d\u0430\u0447"})
    log.info("numbers", extra={"big": 2 ** 64 - 1, "neg": -(2 ** 63), "f": 1e300,
                               "tiny": 5e-324, "negzero": -0.0, "t": True, "n": None})
    log.info("containers", extra={"d": {"a": [1, {"b": [2, 3]}], "c": {}},
                                  "l": [[], [[]], "s"], "t": (1, "two"), "b": b"\x00\xff"})
    log.removeHandler(cap)
    return cap.records


def main():
    for n, f in enumerate(pickle_frames()):
        write("pickle", "%03d" % n, f[4:])
    frames = pickle_frames()
    write("framing", "prefixed", b"\xfe" + b"".join(frames[:3]))
    write("framing", "prefixed_small_chunks", b"\x00" + b"".join(frames[:2]))
    h = logrelay_handlers.JSONSocketHandler("localhost", 0)
    for n, r in enumerate(records()):
        j = logrelay_handlers._json_bytes(h, r)
        write("json", "%03d" % n, j)
        write("framing", "lines%03d" % n, b"\xff" + j + b"\n" + j + b"\r\n\n")
        try:
            write("msgpack", "%03d" % n, logrelay_handlers._msgpack_bytes(h, r))
        except ImportError:
            sys.exit("msgpack seeds need `python3 -m pip install msgpack`")
    # ensure_ascii (json.dumps's default) writes a lone surrogate, such as
    # a byte decoded with errors="surrogateescape", as the escape \udcff.
    lone = {"msg": "bad \udcff \ud800 \U0001F600", "k\udcfe": "v\udfff"}
    write("json", "lone_surrogates", json.dumps(lone).encode("ascii"))


if __name__ == "__main__":
    main()
