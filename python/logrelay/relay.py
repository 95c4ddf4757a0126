"""RelayHandler: a SocketHandler that loses nothing while logrelay restarts.

``logging.handlers.SocketHandler`` sends each record on the caller's thread
and drops it when the connection is down, then waits 1 s, 2 s, 4 s ...
before trying again: a one-second outage of the listener costs seconds of
logs. RelayHandler takes the same arguments, but ``emit()`` only encodes the
record (exactly as ``SocketHandler.makePickle``) and puts it on a bounded
queue; a daemon thread sends the queue to logrelay over its acknowledged
protocol (``logrelay-ack/1``, described in logrelay's ``src/input/ack.rs``):

- a handshake naming a sender id (random per handler and process), then
  numbered batches; logrelay confirms each batch once its outputs took it;
- every record stays in memory until confirmed; after a reconnect (backoff
  50 ms doubling to 2 s, with jitter) the receiver says which batch it has
  last, and the rest is sent again under the same numbers, so a graceful
  restart of logrelay neither loses nor duplicates;
- a full queue waits, drops or spills to ``spool_dir`` (``when_full``), and
  every drop is counted and reported in one WARNING record;
- at exit (``atexit``, ``close()``) it waits up to ``close_timeout`` for the
  confirmations; what is still unconfirmed goes to ``spool_dir`` for the
  next process, or is reported lost on stderr.

Against a listener that does not speak the protocol (the logging cookbook's
Python listener closes the connection on the handshake) it falls back to
SocketHandler's plain frames and says so once on stderr.
"""

import atexit
import encodings.idna  # noqa: F401  (socket's host encoding, imported before any fork or thread needs it)
import logging
import logging.handlers
import os
import pickle
import random
import select
import socket
import struct
import sys
import threading
import time
import weakref
from collections import deque

from . import handlers as _handlers
from . import spool as _spool

MAGIC_V1 = b"logrelay-ack/1\n"
MAGIC_V2 = b"logrelay-ack/2\n"
GOODBYE = 0xFFFFFFFFFFFFFFFF
ENCODERS = {"pickle": 0, "json": 1, "msgpack": 2}
WHEN_FULL = ("block", "drop_newest", "drop_oldest")

#: First reconnect delay; doubles up to BACKOFF_MAX, each with +-50% jitter.
BACKOFF_START = 0.05
BACKOFF_MAX = 2.0
#: Longest wait for a connect, the handshake reply, or a stalled write.
CONNECT_TIMEOUT = 5.0
#: Records and bytes per batch, and batches sent before waiting for
#: confirmations.
BATCH_RECORDS = 1000
BATCH_BYTES = 1 << 20
WINDOW = 16
#: The queue is a few large buffers, not one object per record: emit()
#: writes each frame into the current chunk (at most BATCH_RECORDS
#: records, so a batch is whole chunks); the sender copies whole chunks
#: into one batch and hands them back for reuse. Keeping a record then
#: costs no allocation and, with a spare chunk ready, no page fault on the
#: caller's thread (issue 18).
CHUNK_BYTES = 256 << 10
#: Chunks kept ready: the sender allocates (and so faults in) new ones
#: when emit() takes one, and keeps up to SPARE_MAX of those it recycles.
SPARE_CHUNKS = 2
SPARE_MAX = 2
#: Longest sleep of the sender while records are queued and it waits (to
#: connect, or for confirmations), so that spare chunks stay ready.
SPARE_POLL = 0.02
#: Handshakes closed without a reply before a handler without a token
#: decides the peer is a plain SocketHandler listener (one could be a
#: logrelay killed at that moment).
REFUSALS_FOR_PLAIN = 2
#: Shortest interval between two "records dropped" WARNING records.
DROP_REPORT_INTERVAL = 1.0

#: What SocketHandler.makePickle calls, bound once for emit().
_dumps = pickle.dumps
_pack_len = struct.Struct(">L").pack
_pack_len_into = struct.Struct(">L").pack_into
_unpack_len_from = struct.Struct(">L").unpack_from
_pack_batch = struct.Struct(">QL").pack
_SOCKET_MAKE_PICKLE = logging.handlers.SocketHandler.makePickle

_live = weakref.WeakSet()
#: Whether forks are noticed by hooks (else emit() compares the pid, which
#: costs a system call per record).
_FORK_HOOKS = hasattr(os, "register_at_fork")


def _split(buf, pos, end):
    """The frames (length prefix included) in ``buf[pos:end]``."""
    frames = []
    while pos + 4 <= end:
        (n,) = _unpack_len_from(buf, pos)
        frames.append(bytes(buf[pos : pos + 4 + n]))
        pos += 4 + n
    return frames


def _say(msg):
    """One line on stderr, never raising (stderr may be closed at exit)."""
    try:
        sys.stderr.write("logrelay.RelayHandler: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


class _ConnLost(Exception):
    """The connection ended (EOF, reset, goodbye, a failed write)."""


class RelayHandler(logging.handlers.SocketHandler):
    """A ``logging.handlers.SocketHandler`` that speaks logrelay's
    acknowledged protocol from a background thread.

    ``host, port``: as SocketHandler (``(path, None)`` for a Unix socket).
    Options (keywords, also usable as dictConfig keys):

    - ``encoder``: ``"pickle"`` (default; frames byte-identical to
      ``makePickle``), ``"json"`` or ``"msgpack"`` (needs ``msgpack``);
    - ``queue_records``: records held in memory, queued or unconfirmed
      (default 100,000);
    - ``when_full``: ``"block"`` (wait up to ``block_timeout`` seconds,
      default 1.0, then drop the record), ``"drop_newest"``,
      ``"drop_oldest"``; ignored with ``spool_dir``, where records that do
      not fit go to disk;
    - ``spool_dir``: a directory for records that do not fit the queue and
      for those unconfirmed at exit; the next RelayHandler with the same
      directory sends them;
    - ``close_timeout``: how long ``close()``, ``flush()`` and the exit hook
      wait for confirmations (default 5.0 s);
    - ``token_file``: a file holding the token an input with ``token_file``
      requires (read once; trailing whitespace stripped);
    - ``ssl_context``: an ``ssl.SSLContext`` for a TLS input.
    """

    def __init__(
        self,
        host,
        port=None,
        encoder="pickle",
        queue_records=100_000,
        when_full="block",
        block_timeout=1.0,
        spool_dir=None,
        close_timeout=5.0,
        token_file=None,
        ssl_context=None,
    ):
        logging.handlers.SocketHandler.__init__(self, host, port)
        if encoder not in ENCODERS:
            raise ValueError("encoder must be one of %s, not %r" % (", ".join(ENCODERS), encoder))
        if when_full not in WHEN_FULL:
            raise ValueError("when_full must be one of %s, not %r" % (", ".join(WHEN_FULL), when_full))
        if int(queue_records) < 1:
            raise ValueError("queue_records must be at least 1")
        if encoder == "msgpack":
            import msgpack  # noqa: F401  (fail here, not on the first record)
        self.encoder = encoder
        self.queue_records = int(queue_records)
        self.when_full = when_full
        self.block_timeout = float(block_timeout)
        self.spool_dir = os.fspath(spool_dir) if spool_dir is not None else None
        self.close_timeout = float(close_timeout)
        self.ssl_context = ssl_context
        self.token = None
        if token_file is not None:
            with open(token_file, "rb") as f:
                self.token = f.read().decode("utf-8").rstrip().encode("utf-8")
            if len(self.token) > 0xFFFF:
                raise ValueError("the token in %s is too long" % token_file)
        self._encoder_byte = ENCODERS[encoder]
        # emit() inlines makePickle unless a subclass brought its own.
        self._inline_pickle = encoder == "pickle" and type(self).makePickle is _SOCKET_MAKE_PICKLE
        self._reported = set()
        # Counters (read them freely; they only grow, per process).
        self.dropped = 0
        self.confirmed = 0
        self.spool_torn = 0
        self._setup()
        _live.add(self)
        if self.spool_dir:
            # Records an earlier process left in the spool go out now, not
            # at this one's first record.
            self._start()

    # ------------------------------------------------------------ state

    def _setup(self):
        """Fresh per-process state: at construction and in a forked child."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        # The queue: full chunks ([buffer, end, records]) then the chunk
        # being written (_wbuf, _wend, _wn); the sender's cursor (_rpos,
        # _rn) is in the first of them. _queued counts the records after it.
        self._chunks = deque()
        self._wbuf = None
        self._wend = CHUNK_BYTES  # no chunk yet: the first record takes one
        self._wn = 0
        self._rpos = 0
        self._rn = 0
        self._queued = 0
        self._spare = []
        self._want_spare = False
        self._copying = False
        self._passed = []
        self._inflight = deque()  # (seq, records, batch bytes) sent, not yet confirmed
        self._inflight_n = 0
        self._backlog = deque()  # claimed spool records, sent first
        self._claims = []  # (Claimed, records left before it is all confirmed)
        self._claim_left = 0
        self._next_seq = 1
        self._sender_id = "py-%d-%s" % (os.getpid(), os.urandom(8).hex())
        self._sock = None
        self._rbuf = b""
        self._plain = False
        self._refusals = 0
        self._backoff = BACKOFF_START
        self._next_attempt = 0.0
        self._thread = None
        self._idle = False
        self._waiters = 0
        self._stopping = False
        self._deadline = None
        self._finished = False
        self._drops_pending = 0
        self._drop_first = self._drop_last = None
        self._drop_reported_at = 0.0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._spool = (
            _spool.LiveSpool(self.spool_dir, self._encoder_byte, self._sender_id)
            if self.spool_dir
            else None
        )

    def _before_fork(self):
        self._lock.acquire()
        if self._spool is not None and self._spool.file is not None:
            # The child closes its copy: nothing may be left in its buffer.
            try:
                self._spool.file.flush()
            except OSError:
                pass

    def _after_fork_parent(self):
        self._lock.release()

    def _after_fork_child(self):
        """A child starts with an empty queue, its own sender id and its
        own thread (started by its first record): the parent's records
        stay the parent's."""
        for s in (self._sock, self._wake_r, self._wake_w):
            if s is not None:
                try:
                    s.close()  # our copy of the fd only: no FIN, no TLS alert
                except OSError:
                    pass
        if self._spool is not None:
            self._spool.forget()
        for c, _ in self._claims:
            c.release()
        self.dropped = self.confirmed = 0
        self._setup()
        mp = sys.modules.get("multiprocessing.util")
        if mp is not None:
            # multiprocessing ends a forked child with os._exit after its
            # finalizers, skipping atexit: flush there instead.
            try:
                mp.Finalize(self, RelayHandler._close_at_exit, args=(weakref.ref(self),), exitpriority=10)
            except Exception:
                pass

    @staticmethod
    def _close_at_exit(ref):
        h = ref()
        if h is not None:
            h.close()

    # ------------------------------------------------------------- emit

    def emit(self, record):
        """Encode ``record`` and queue it; never waits on the network.

        This is the application's cost per record, so the common case is
        inlined (issue 18: p99 under 50 us while logrelay is down):
        ``SocketHandler.makePickle`` step for step with its globals bound
        at import (the same bytes), its length prefix and payload written
        straight into the queue's current chunk (no frame object, no
        allocation); anything else goes through ``_put``."""
        try:
            if self._inline_pickle:
                if record.exc_info:
                    self.format(record)  # record.exc_text, as makePickle
                d = dict(record.__dict__)
                d["msg"] = record.getMessage()
                d["args"] = None
                d["exc_info"] = None
                d.pop("message", None)
                s = _dumps(d, 1)
                n = len(s)
                if self._thread is not None and (_FORK_HOOKS or self._pid == os.getpid()):
                    with self._lock:
                        o = self._wend
                        e = o + 4 + n
                        if (
                            e <= CHUNK_BYTES
                            and self._wn < BATCH_RECORDS
                            and self._queued + self._inflight_n < self.queue_records
                            and self._spool is None
                            and not self._finished
                        ):
                            buf = self._wbuf
                            _pack_len_into(buf, o, n)
                            buf[o + 4 : e] = s
                            self._wend = e
                            self._wn += 1
                            self._queued += 1
                            if self._idle:
                                self._idle = False
                                self._wake()
                            return
                frame = _pack_len(n) + s
            else:
                frame = self._encode(record)
        except Exception:
            self.handleError(record)
            return
        self._put(frame)  # the first record, a fork, a spool, a full queue or chunk

    def _encode(self, record):
        if self.encoder == "pickle":
            return self.makePickle(record)
        if self.encoder == "json":
            data = _handlers._json_bytes(self, record)
        else:
            data = _handlers._msgpack_bytes(self, record)
        return struct.pack(">L", len(data)) + data

    def _put(self, frame, bounded=True):
        if not _FORK_HOOKS and self._pid != os.getpid():
            # No os.register_at_fork (not POSIX): notice the fork here.
            self._after_fork_child()
        if self._thread is None:
            self._start()
        with self._lock:
            if self._finished:
                self._count_drop()
                return
            sp = self._spool
            if bounded and sp is not None and (sp.unread or self._queued + self._inflight_n >= self.queue_records):
                try:
                    sp.append(frame)
                    return
                except OSError as e:
                    self._say_once("spool", "cannot write to spool_dir %s (%s); applying when_full" % (self.spool_dir, e))
            if bounded and self._queued + self._inflight_n >= self.queue_records:
                policy = self.when_full
                if threading.current_thread() is self._thread:
                    policy = "drop_newest"  # the sender never waits on itself
                if policy == "drop_oldest":
                    if self._queued:
                        self._drop_oldest()
                    self._count_drop()
                elif policy == "drop_newest":
                    self._count_drop()
                    return
                else:
                    end = time.monotonic() + self.block_timeout
                    self._waiters += 1
                    try:
                        while self._queued + self._inflight_n >= self.queue_records and not self._finished:
                            left = end - time.monotonic()
                            if left <= 0 or not self._not_full.wait(left):
                                break
                    finally:
                        self._waiters -= 1
                    if self._queued + self._inflight_n >= self.queue_records or self._finished:
                        self._count_drop()
                        return
            self._append(frame)
            if self._idle:
                self._idle = False
                self._wake()

    # ------------------------------------------------------ the queue

    def _append(self, frame):
        """Queue one whole frame (length prefix included). Lock held."""
        o = self._wend
        e = o + len(frame)
        if e > CHUNK_BYTES or self._wn >= BATCH_RECORDS:
            if len(frame) > CHUNK_BYTES:
                # Larger than a chunk: a chunk of its own, never reused.
                self._retire()
                self._chunks.append([frame, len(frame), 1])
                self._queued += 1
                return
            if self._spare and self._wbuf is not None and self._chunks:
                # The common switch, inline (this path runs cold: every
                # call here costs the caller microseconds).
                self._chunks.append([self._wbuf, o, self._wn])
                self._wbuf = self._spare.pop()
                self._wn = 0
                if len(self._spare) < SPARE_CHUNKS:
                    self._want_spare = True
            else:
                self._next_chunk()
            o, e = 0, len(frame)
        self._wbuf[o:e] = frame
        self._wend = e
        self._wn += 1
        self._queued += 1

    def _retire(self):
        """The chunk being written is done: it joins the full ones (unless
        it holds nothing the sender has not taken) and none is current.
        Lock held."""
        buf = self._wbuf
        if buf is not None:
            if self._chunks or self._rn < self._wn:
                self._chunks.append([buf, self._wend, self._wn])
            else:
                self._recycle(buf)
                self._rpos = self._rn = 0
        self._wbuf = None
        self._wend = CHUNK_BYTES
        self._wn = 0

    def _next_chunk(self):
        """Start a new chunk to write (a spare, made ready by the sender).
        Lock held."""
        self._retire()
        if self._spare:
            self._wbuf = self._spare.pop()
        else:
            self._wbuf = bytearray(CHUNK_BYTES)  # the sender fell behind
        self._wend = 0
        if len(self._spare) < SPARE_CHUNKS:
            # No wake-up: the sender looks at least every SPARE_POLL while
            # records are queued (woken here, it would take the GIL from
            # the caller to allocate: 100-200 us for this one record).
            self._want_spare = True

    def _recycle(self, buf):
        # Lock held. While the sender copies a batch out of chunks, those
        # it passed wait (emit() must not write into them yet).
        if type(buf) is bytearray and len(buf) == CHUNK_BYTES:
            if self._copying:
                self._passed.append(buf)
            elif len(self._spare) < SPARE_MAX:
                self._spare.append(buf)

    def _first(self):
        """The chunk the sender's cursor is in: (buffer, end, records).
        Lock held."""
        if self._chunks:
            return self._chunks[0]
        return self._wbuf, self._wend, self._wn

    def _advance(self, end, n):
        """The sender's cursor moved to ``end``, ``n`` records into the
        first chunk; a full chunk passed whole is recycled. Lock held."""
        if self._chunks and n >= self._chunks[0][2]:
            self._recycle(self._chunks.popleft()[0])
            self._rpos = self._rn = 0
        else:
            self._rpos, self._rn = end, n

    def _drop_oldest(self):
        """Drop the oldest queued record (when_full="drop_oldest"). Lock
        held; _queued > 0."""
        buf = self._first()[0]
        (n,) = _unpack_len_from(buf, self._rpos)
        self._advance(self._rpos + 4 + n, self._rn + 1)
        self._queued -= 1

    def _queue_frames(self):
        """The queued records as frames, oldest first (lock held; not
        taken from the queue)."""
        frames = []
        pos, first = self._rpos, True
        for buf, end, _ in list(self._chunks) + [(self._wbuf, self._wend, self._wn)]:
            if buf is not None:
                frames.extend(_split(buf, pos if first else 0, end))
            first = False
        return frames

    def _clear_queue(self):
        # Lock held.
        self._chunks.clear()
        self._wbuf = None
        self._wend = CHUNK_BYTES
        self._wn = self._rpos = self._rn = self._queued = 0

    def _top_up(self):
        """Sender: make chunks ready for emit() (allocated and touched
        here, so the caller's thread takes no page fault for them)."""
        while True:
            with self._lock:
                if len(self._spare) >= SPARE_CHUNKS or self._finished:
                    self._want_spare = False
                    return
            buf = bytearray(CHUNK_BYTES)
            with self._lock:
                self._spare.append(buf)

    def _count_drop(self):
        # Called with the lock held.
        now = time.time()
        self.dropped += 1
        self._drops_pending += 1
        if self._drop_first is None:
            self._drop_first = now
        self._drop_last = now

    def _wake(self):
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full: the sender is awake anyway

    def _start(self):
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="logrelay-RelayHandler", daemon=True)
            self._thread.start()

    # ------------------------------------------------ flush and close

    def _pending(self):
        # Called with the lock held.
        n = self._queued + self._inflight_n + len(self._backlog)
        if self._spool is not None:
            n += self._spool.unread
        return n

    def flush(self, timeout=None):
        """Wait until every queued record is confirmed (sent, against a
        plain listener), at most ``timeout`` seconds (default
        ``close_timeout``). Returns whether everything was."""
        if timeout is None:
            timeout = self.close_timeout
        if self._thread is None or self._pid != os.getpid():
            return True
        end = time.monotonic() + timeout
        with self._lock:
            while self._pending() and not self._finished:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._waiters += 1
                try:
                    self._progress.wait(min(left, 0.5))
                finally:
                    self._waiters -= 1
            return not self._pending()

    def close(self):
        """Wait up to ``close_timeout`` for confirmations, then stop the
        sender; what is left goes to ``spool_dir`` or is reported lost."""
        self._shutdown(self.close_timeout)
        logging.Handler.close(self)

    def _shutdown(self, timeout):
        if self._pid != os.getpid():
            return
        thread = self._thread
        with self._lock:
            if self._finished:
                return
            if thread is None:
                self._finished = True
                left = self._pending()
                self._keep_or_report(self._queue_frames(), left)
                self._clear_queue()
                return
            if self._deadline is None:
                self._deadline = time.monotonic() + timeout
            self._stopping = True
            self._wake()
        thread.join(timeout + 1.0)
        if not thread.is_alive():
            self._close(self._wake_r)
            self._close(self._wake_w)

    def _keep_or_report(self, frames, count):
        """At the end: spool ``frames`` (the unsent records, oldest first) or
        report them lost."""
        kept = 0
        if self._spool is not None:
            try:
                kept = self._spool.write_final(frames)
            except OSError as e:
                _say("cannot write the unconfirmed records to spool_dir %s: %s" % (self.spool_dir, e))
        elif count:
            _say(
                "%d record(s) not confirmed by %s within close_timeout=%gs: lost"
                % (count, self._target(), self.close_timeout)
            )
        if kept:
            _say("%d unconfirmed record(s) kept in spool_dir %s for the next start" % (kept, self.spool_dir))
        for c, _ in self._claims:
            c.release()
        self._claims = []

    # ------------------------------------------------------- the sender

    def _run(self):
        try:
            self._claim_spool()
            while True:
                if self._stopping:
                    with self._lock:
                        done = not self._pending()
                    if done or time.monotonic() >= self._deadline:
                        break
                if self._want_spare:
                    self._top_up()
                if self._sock is None:
                    self._wait_and_connect()
                    continue
                try:
                    self._read_acks(wait=0)
                    self._report_drops()
                    if not self._send_some():
                        self._read_acks(wait=self._idle_wait())
                except (_ConnLost, OSError) as e:
                    self._lost(e)
        except Exception as e:  # a bug: say it, never die silently
            _say("sender thread failed: %r" % (e,))
        finally:
            self._finish()

    def _idle_wait(self):
        """How long the connected sender may sleep: until a confirmation,
        a new record (the wake socket) or the close deadline."""
        with self._lock:
            if not self._queued and not self._backlog and not (self._spool and self._spool.unread):
                self._idle = True
        if self._stopping:
            return 0.05
        return 1.0 if self._idle else SPARE_POLL

    def _finish(self):
        with self._lock:
            self._finished = True
            frames = [f for _, _, b in self._inflight for f in _split(b, 12, len(b))]
            frames.extend(self._backlog)
            frames.extend(self._queue_frames())
            left = self._pending()
            self._inflight.clear()
            self._inflight_n = 0
            self._backlog.clear()
            self._clear_queue()
            self._keep_or_report(frames, left)
            self._not_full.notify_all()
            self._progress.notify_all()
        self._close_sock()

    def _claim_spool(self):
        if not self.spool_dir:
            return
        own = {self._spool.path} if self._spool and self._spool.path else set()
        claimed, frames, torn = _spool.claim(self.spool_dir, self._encoder_byte, own)
        if torn:
            self.spool_torn += torn
            _say("%d spool file(s) in %s ended in a torn record (a process killed mid-write); it was skipped" % (torn, self.spool_dir))
        if frames:
            _say("sending %d record(s) left in spool_dir %s by an earlier process" % (len(frames), self.spool_dir))
        with self._lock:
            self._backlog.extend(frames)
            self._claims = [(c, c.count) for c in claimed]

    def _wait_and_connect(self):
        with self._lock:
            idle = not self._pending()
            if idle and not self._stopping:
                self._idle = True
        if idle:
            self._sleep(None if not self._stopping else 0.05)
            return
        left = self._next_attempt - time.monotonic()
        if left > 0:
            if self._stopping:
                left = min(left, max(0.0, self._deadline - time.monotonic()))
            self._sleep(min(left, SPARE_POLL))
            if time.monotonic() < self._next_attempt:
                return
        self._connect()

    def _sleep(self, timeout):
        """Sleep until woken (new record, close) or ``timeout``."""
        try:
            select.select([self._wake_r], [], [], timeout)
            self._drain_wake()
        except (OSError, ValueError):
            time.sleep(timeout or 0.05)

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _target(self):
        if self.port is None:
            return str(self.host)
        return "%s:%s" % (self.host, self.port)

    def _open(self):
        if self.port is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(CONNECT_TIMEOUT)
            try:
                s.connect(self.host)
            except OSError:
                s.close()
                raise
        else:
            s = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            host = self.host if self.port is not None else None
            try:
                s = self.ssl_context.wrap_socket(s, server_hostname=host)
            except OSError:
                s.close()
                raise
        s.settimeout(CONNECT_TIMEOUT)
        return s

    def _hello(self):
        sid = self._sender_id.encode("utf-8")
        head = b"\0\0\0\0" + (MAGIC_V2 if self.token is not None else MAGIC_V1)
        hello = head + bytes([self._encoder_byte]) + struct.pack(">H", len(sid)) + sid
        if self.token is not None:
            hello += struct.pack(">H", len(self.token)) + self.token
        return hello

    def _retry_later(self):
        delay = self._backoff * random.uniform(0.5, 1.5)
        self._next_attempt = time.monotonic() + delay
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _connect(self):
        try:
            sock = self._open()
        except Exception as e:  # OSError, or e.g. a codec lookup failing in a forked child
            if not isinstance(e, (ConnectionError, FileNotFoundError, socket.timeout)):
                self._say_once("connect:%s" % type(e).__name__, "cannot connect to %s: %s (retrying)" % (self._target(), e))
            self._retry_later()
            return
        if self._plain:
            self._up(sock)
            return
        magic = MAGIC_V2 if self.token is not None else MAGIC_V1
        try:
            sock.sendall(self._hello())
            reply = self._recv_exact(sock, len(magic) + 8)
        except socket.timeout:
            self._close(sock)
            self._say_once("noreply", "%s did not answer the handshake within %gs (retrying)" % (self._target(), CONNECT_TIMEOUT))
            self._retry_later()
            return
        except (_ConnLost, OSError):
            reply = None
        if reply is None or reply[: len(magic)] != magic:
            self._close(sock)
            self._refused()
            return
        (last,) = struct.unpack(">Q", reply[len(magic) :])
        self._refusals = 0
        self._confirm(last)
        # Unconfirmed batches again, under the same numbers: the receiver
        # confirms without writing again any it already has.
        try:
            for _, _, data in list(self._inflight):
                sock.sendall(data)
        except OSError as e:
            self._close(sock)
            self._lost(e)
            return
        self._up(sock)

    def _up(self, sock):
        self._sock = sock
        self._rbuf = b""
        self._backoff = BACKOFF_START

    def _refused(self):
        """Connected, but the handshake was closed without our reply."""
        if self.token is not None:
            self._say_once(
                "token",
                "%s closed the connection after the handshake without a reply: "
                "it most likely refused the token from token_file (retrying)" % self._target(),
            )
            self._retry_later()
            return
        self._refusals += 1
        if self._refusals < REFUSALS_FOR_PLAIN:
            self._next_attempt = time.monotonic() + BACKOFF_START
            return
        self._plain = True
        self._say_once(
            "plain",
            "%s does not speak logrelay's acknowledged protocol (a plain SocketHandler "
            "listener?): sending plain SocketHandler frames, without confirmations; "
            "records in flight when the connection breaks can be lost" % self._target(),
        )
        with self._lock:
            # What was sent and unconfirmed goes first, as plain frames.
            while self._inflight:
                _, count, data = self._inflight.pop()
                self._inflight_n -= count
                self._backlog.extendleft(reversed(_split(data, 12, len(data))))
        self._next_attempt = 0.0

    def _recv_exact(self, sock, n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise _ConnLost("closed during the handshake")
            data += chunk
        return data

    def _take(self):
        """The next records to send, oldest first, at most a batch:
        ``(count, pieces)``, the pieces being claimed frames and views of
        whole chunks (from the cursor on). Until ``_taken()``, the chunks
        passed are not reused."""
        pieces, count, size = [], 0, 0
        with self._lock:
            bl = self._backlog
            while bl and count < BATCH_RECORDS and size < BATCH_BYTES:
                f = bl.popleft()
                pieces.append(f)
                count += 1
                size += len(f)
            self._copying = True
            while self._queued and size < BATCH_BYTES:
                buf, end, n = self._first()
                k = n - self._rn
                if not k or (count and count + k > BATCH_RECORDS):
                    break
                pieces.append(memoryview(buf)[self._rpos : end])
                count += k
                size += end - self._rpos
                self._queued -= k
                self._advance(end, n)
            sp = self._spool
            if sp is not None and sp.unread and self._queued < self.queue_records // 2:
                try:
                    for f in sp.read(self.queue_records // 2 - self._queued):
                        self._append(f)
                except OSError as e:
                    self._say_once("spoolread", "cannot read spool_dir %s back: %s" % (self.spool_dir, e))
            if count and not self._plain:
                self._inflight_n += count
            if count and self._waiters:
                self._not_full.notify_all()
        return count, pieces

    def _taken(self):
        """The batch is copied out: the chunks it passed can be reused."""
        if not self._passed:
            # Without the lock (one less hand-off with emit()): a chunk
            # passed meanwhile waits for the next batch's _taken().
            self._copying = False
            return
        with self._lock:
            self._copying = False
            passed, self._passed = self._passed, []
            for buf in passed:
                self._recycle(buf)

    def _send_some(self):
        """Send one batch if the window allows. Returns whether it did."""
        if not self._plain and len(self._inflight) >= WINDOW:
            return False
        count, pieces = self._take()
        try:
            if not count:
                return False
            if self._plain:
                data = b"".join(pieces)
            else:
                seq = self._next_seq
                self._next_seq += 1
                pieces.insert(0, _pack_batch(seq, count))
                data = b"".join(pieces)
        finally:
            del pieces
            self._taken()
        if self._plain:
            try:
                self._sock.sendall(data)
            except OSError:
                with self._lock:
                    # Sent again whole on the next connection (SocketHandler
                    # would drop it; the start of it may arrive twice).
                    self._backlog.extendleft(reversed(_split(data, 0, len(data))))
                raise
            with self._lock:
                self.confirmed += count
                self._settle_claims(count)
                if self._waiters:
                    self._progress.notify_all()
            return True
        self._inflight.append((seq, count, data))
        self._sock.sendall(data)
        return True

    def _read_acks(self, wait):
        """Read confirmations: what is there now (``wait`` 0) or until one
        arrives, a record is queued, or ``wait`` seconds pass."""
        sock = self._sock
        pending = getattr(sock, "pending", None)
        if not (pending and pending()):
            r, _, _ = select.select([sock, self._wake_r], [], [], wait)
            if self._wake_r in r:
                self._drain_wake()
            if sock not in r:
                return
        data = sock.recv(65536)
        if not data:
            raise _ConnLost("the receiver closed the connection")
        if self._plain:
            return  # a plain listener says nothing worth reading
        buf = self._rbuf + data
        n = len(buf) // 8
        for (seq,) in struct.iter_unpack(">Q", buf[: n * 8]):
            if seq == GOODBYE:
                raise _ConnLost("the receiver is closing")
            self._confirm(seq)
        self._rbuf = buf[n * 8 :]

    def _confirm(self, seq):
        done = 0
        inflight = self._inflight
        while inflight and inflight[0][0] <= seq:
            done += inflight.popleft()[1]
        if done:
            with self._lock:
                self._inflight_n -= done
                self.confirmed += done
                self._settle_claims(done)
                if self._waiters:
                    self._not_full.notify_all()
                    self._progress.notify_all()

    def _settle_claims(self, n):
        """``n`` more records confirmed, in order: delete the claimed spool
        files they complete (their records were sent first)."""
        while n and self._claims:
            c, left = self._claims[0]
            if n < left:
                self._claims[0] = (c, left - n)
                return
            n -= left
            self._claims.pop(0)
            c.done()

    def _lost(self, why):
        sock, self._sock = self._sock, None
        if sock is not None:
            self._close(sock)
        self._rbuf = b""
        self._retry_later()
        if isinstance(why, _ConnLost) and "closing" in str(why):
            # A graceful restart: the successor is usually up within a few
            # hundred ms.
            self._next_attempt = time.monotonic() + BACKOFF_START * random.uniform(0.5, 1.5)

    def _close_sock(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            self._close(sock)

    @staticmethod
    def _close(sock):
        try:
            sock.close()
        except OSError:
            pass

    def _report_drops(self):
        """Once connected: one WARNING record from ``logrelay.handler``
        saying how many records were dropped, and when."""
        if not self._drops_pending or time.monotonic() - self._drop_reported_at < DROP_REPORT_INTERVAL:
            return
        with self._lock:
            n, first, last = self._drops_pending, self._drop_first, self._drop_last
            self._drops_pending = 0
            self._drop_first = self._drop_last = None
        self._drop_reported_at = time.monotonic()
        fmt = "%Y-%m-%d %H:%M:%S"
        rec = logging.getLogger("logrelay.handler").makeRecord(
            "logrelay.handler",
            logging.WARNING,
            __file__,
            0,
            "RelayHandler dropped %d record(s) between %s and %s: its queue of %d was full (when_full=%s)",
            (n, time.strftime(fmt, time.localtime(first)), time.strftime(fmt, time.localtime(last)),
             self.queue_records, self.when_full),
            None,
            extra={"dropped": n, "dropped_since": first, "dropped_until": last},
        )
        if rec.levelno >= self.level and self.filter(rec):
            self._put(self._encode(rec), bounded=False)

    def _say_once(self, key, msg):
        if key not in self._reported:
            self._reported.add(key)
            _say(msg)

    def __repr__(self):
        return "<%s %s (%s)>" % (type(self).__name__, self._target(), logging.getLevelName(self.level))

    # SocketHandler's own sending is not used.
    def send(self, s):  # pragma: no cover - kept for API compatibility
        raise NotImplementedError("RelayHandler sends from its own thread")


def _at_exit():
    for h in list(_live):
        try:
            h._shutdown(h.close_timeout)
        except Exception:
            pass


_forking = []


def _before_fork():
    # The same handlers, in the same order, get the after-fork calls.
    _forking[:] = list(_live)
    for h in _forking:
        h._before_fork()


def _after_parent():
    for h in _forking:
        h._after_fork_parent()
    del _forking[:]


def _after_child():
    for h in _forking:
        h._after_fork_child()
    del _forking[:]


atexit.register(_at_exit)
if _FORK_HOOKS:
    os.register_at_fork(before=_before_fork, after_in_parent=_after_parent, after_in_child=_after_child)
