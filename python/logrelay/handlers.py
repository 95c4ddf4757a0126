"""Drop-in logging handlers that send JSON or msgpack to logrelay.

Import them from the package (``from logrelay import JSONSocketHandler``),
or copy this file (standard library only) into your project. Each handler is a
``logging.handlers.SocketHandler`` (or ``DatagramHandler``) whose
``makePickle`` is overridden: it sends the same record dict that
SocketHandler would pickle, in the same 4-byte big-endian length-prefixed
frames, so reconnection, retry and error handling stay Python's own.

logrelay config for the matching inputs::

    "inputs": {
      "json":    {"type": "tcp", "address": "127.0.0.1:9021", "decoder": "json"},
      "lines":   {"type": "tcp", "address": "127.0.0.1:9022", "decoder": "json",
                  "framing": "newline"},
      "msgpack": {"type": "tcp", "address": "127.0.0.1:9023", "decoder": "msgpack"}
    }

Usage::

    from logrelay import JSONSocketHandler
    handler = JSONSocketHandler("127.0.0.1", 9021)
    logging.getLogger().addHandler(handler)

These handlers are SocketHandlers: a record logged while the listener is
away is lost. ``logrelay.RelayHandler(host, port, encoder="json")`` sends
the same records over logrelay's acknowledged protocol instead.

Why send JSON or msgpack at all? Other languages can produce them, and a
listener that is not logrelay can read them without running ``pickle.loads``
on network input.

Values JSON cannot hold are sent as their ``str()`` (``default=str``):
a datetime in ``extra=`` arrives as its text. msgpack sends bytes as
binary and tuples as arrays. ``MsgpackSocketHandler`` needs the ``msgpack``
package (``pip install msgpack``).
"""

import json
import logging
import logging.handlers
import struct

__all__ = [
    "record_dict",
    "JSONSocketHandler",
    "JSONLinesSocketHandler",
    "JSONDatagramHandler",
    "MsgpackSocketHandler",
    "MsgpackDatagramHandler",
]


def record_dict(handler, record):
    """The dict SocketHandler.makePickle pickles: the message merged with
    its args, the traceback rendered into exc_text, no live objects."""
    if record.exc_info:
        # Render the traceback into record.exc_text (as makePickle does).
        handler.format(record)
    d = dict(record.__dict__)
    d["msg"] = record.getMessage()
    d["args"] = None
    d["exc_info"] = None
    d.pop("message", None)
    return d


def _json_bytes(handler, record):
    d = record_dict(handler, record)
    try:
        return json.dumps(d, default=str, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (text decoded with errors="surrogateescape") has
        # no UTF-8: send it as the escape json.dumps writes by default,
        # which logrelay reads as U+FFFD, as it does a pickled one.
        return json.dumps(d, default=str).encode("ascii")


class JSONSocketHandler(logging.handlers.SocketHandler):
    """SocketHandler sending length-prefixed JSON (logrelay ``decoder: json``)."""

    def makePickle(self, record):
        data = _json_bytes(self, record)
        return struct.pack(">L", len(data)) + data


class JSONLinesSocketHandler(logging.handlers.SocketHandler):
    """SocketHandler sending one JSON object per line (logrelay
    ``decoder: json``, ``framing: newline``). json.dumps escapes newlines
    inside strings, so a record is always exactly one line."""

    def makePickle(self, record):
        return _json_bytes(self, record) + b"\n"


class JSONDatagramHandler(logging.handlers.DatagramHandler):
    """DatagramHandler sending length-prefixed JSON (a ``udp`` input with
    ``decoder: json``)."""

    def makePickle(self, record):
        data = _json_bytes(self, record)
        return struct.pack(">L", len(data)) + data


def _msgpack_bytes(handler, record):
    import msgpack  # imported here so the JSON handlers work without it

    # surrogatepass: a lone surrogate travels as pickle sends it, and
    # logrelay reads it as U+FFFD instead of the handler failing the record.
    return msgpack.packb(
        record_dict(handler, record), default=str, unicode_errors="surrogatepass"
    )


class MsgpackSocketHandler(logging.handlers.SocketHandler):
    """SocketHandler sending length-prefixed msgpack (logrelay
    ``decoder: msgpack``)."""

    def makePickle(self, record):
        data = _msgpack_bytes(self, record)
        return struct.pack(">L", len(data)) + data


class MsgpackDatagramHandler(logging.handlers.DatagramHandler):
    """DatagramHandler sending length-prefixed msgpack (a ``udp`` input
    with ``decoder: msgpack``)."""

    def makePickle(self, record):
        data = _msgpack_bytes(self, record)
        return struct.pack(">L", len(data)) + data
