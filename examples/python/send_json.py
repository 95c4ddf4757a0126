"""Send a few records to logrelay as JSON or msgpack, through the handlers
of the logrelay package (pip install logrelay, or run from a checkout: the
package is imported from ../../python when it is not installed).

    python3 examples/python/send_json.py json 127.0.0.1 9021
    python3 examples/python/send_json.py lines 127.0.0.1 9022
    python3 examples/python/send_json.py msgpack 127.0.0.1 9023
"""

import logging
import os
import sys

try:
    import logrelay  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

from logrelay import (  # noqa: E402
    JSONLinesSocketHandler,
    JSONSocketHandler,
    MsgpackSocketHandler,
)

HANDLERS = {
    "json": JSONSocketHandler,
    "lines": JSONLinesSocketHandler,
    "msgpack": MsgpackSocketHandler,
}

kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
handler = HANDLERS[kind](host, port)
log = logging.getLogger("example")
log.setLevel(logging.DEBUG)
log.addHandler(handler)
log.info("hello from %s", kind)
log.warning("with extra", extra={"user": "ann", "ids": [1, 2]})
try:
    1 / 0
except ZeroDivisionError:
    log.exception("with a traceback")
handler.close()
