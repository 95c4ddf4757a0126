"""logrelay's Python side.

- ``RelayHandler``: a drop-in for ``logging.handlers.SocketHandler`` that
  never blocks the application on the network and loses nothing while
  logrelay restarts (logrelay's acknowledged protocol, a bounded queue, a
  background sender thread; see ``logrelay.relay``).
- ``JSONSocketHandler``, ``JSONLinesSocketHandler``, ``JSONDatagramHandler``,
  ``MsgpackSocketHandler``, ``MsgpackDatagramHandler``: SocketHandlers that
  send JSON or msgpack instead of pickle (see ``logrelay.handlers``).

Standard library only (the msgpack encoders need the ``msgpack`` package).
"""

from .handlers import (
    JSONDatagramHandler,
    JSONLinesSocketHandler,
    JSONSocketHandler,
    MsgpackDatagramHandler,
    MsgpackSocketHandler,
    record_dict,
)
from .relay import RelayHandler

__version__ = "0.1.0"

__all__ = [
    "RelayHandler",
    "JSONSocketHandler",
    "JSONLinesSocketHandler",
    "JSONDatagramHandler",
    "MsgpackSocketHandler",
    "MsgpackDatagramHandler",
    "record_dict",
]
