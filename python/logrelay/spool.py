"""RelayHandler's ``spool_dir``: records that did not fit the queue, and
records still unconfirmed when the process exits, kept on disk for the next
RelayHandler that starts with the same directory.

A spool file is ``<time_ns>-<pid>-<sender id>.spool``: an 8-byte magic, one
encoder byte (0 pickle, 1 json, 2 msgpack), then frames exactly as on the
wire (4-byte big-endian length, payload). Files are append-only.

Ownership is an ``flock``: the process writing a file holds an exclusive
lock on it for as long as it lives, so another process sharing the
directory (a sibling gunicorn worker) never takes a file that is still being
written. A handler starting up takes every file it can lock (its writer is
gone), sends its records before its own, and deletes the file once the
receiver confirmed them all. A torn tail (the writer killed mid-write) ends
that file's records; it is counted, never an error.
"""

import fcntl
import os
import struct
import time

MAGIC = b"LRPYSPL1"
HEADER_LEN = len(MAGIC) + 1
SUFFIX = ".spool"


def parse(data):
    """``(encoder byte, frames, torn)`` from a spool file's bytes: the
    frames are whole (length prefix included); ``torn`` is 1 when bytes
    after the last whole frame were left (a torn tail), else 0. ``None``
    when ``data`` is not a spool file."""
    if len(data) < HEADER_LEN or data[: len(MAGIC)] != MAGIC:
        return None
    frames = []
    pos, end = HEADER_LEN, len(data)
    while pos + 4 <= end:
        (n,) = struct.unpack_from(">L", data, pos)
        if pos + 4 + n > end:
            break
        frames.append(bytes(data[pos : pos + 4 + n]))
        pos += 4 + n
    return data[len(MAGIC)], frames, int(pos != end)


def _lock(f):
    """Take ``f``'s exclusive lock without waiting; False if another open
    file holds it."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class Claimed:
    """A spool file left by a process that is gone, locked by us until its
    records are confirmed (then deleted) or we exit (then left for the
    next handler)."""

    def __init__(self, path, f, count):
        self.path, self.file, self.count = path, f, count

    def done(self):
        """Every record confirmed: delete the file."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self.release()

    def release(self):
        """Close without deleting (after a fork, or records left unsent)."""
        try:
            self.file.close()
        except OSError:
            pass


def claim(directory, encoder_byte, skip=()):
    """Lock and read every spool file in ``directory`` whose writer is gone
    and whose records use ``encoder_byte``, oldest first. Returns
    ``(claimed, frames, torn)``: the ``Claimed`` files in order, all their
    frames in order, and how many files had a torn tail."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except OSError:
        return [], [], 0
    claimed, frames, torn = [], [], 0
    for name in names:
        path = os.path.join(directory, name)
        if path in skip:
            continue
        try:
            f = open(path, "rb")
        except OSError:
            continue
        if not _lock(f):
            f.close()
            continue
        try:
            parsed = parse(f.read())
        except OSError:
            parsed = None
        if parsed is None:
            # Not ours (or empty: a writer killed before its header).
            if os.path.getsize(path) == 0:
                Claimed(path, f, 0).done()
            else:
                f.close()
            continue
        enc, got, t = parsed
        if enc != encoder_byte:
            f.close()  # left for a handler with that encoder
            continue
        torn += t
        c = Claimed(path, f, len(got))
        if not got:
            c.done()
            continue
        claimed.append(c)
        frames.extend(got)
    return claimed, frames, torn


class LiveSpool:
    """This process's own spool file: appended to while the queue is full,
    read back in order as the queue drains. Created on first use."""

    def __init__(self, directory, encoder_byte, sender_id):
        self.dir = directory
        self.encoder_byte = encoder_byte
        self.sender_id = sender_id
        self.path = None
        self.file = None
        # Records appended and not yet read back, and where reading resumes.
        self.unread = 0
        self.read_pos = HEADER_LEN

    def _open(self):
        os.makedirs(self.dir, exist_ok=True)
        name = "%020d-%d-%s%s" % (time.time_ns(), os.getpid(), self.sender_id, SUFFIX)
        path = os.path.join(self.dir, name)
        # Locked and with its header before it has its name: a handler
        # claiming files never sees it half-made.
        f = open(path + ".new", "a+b")
        _lock(f)
        f.write(MAGIC + bytes([self.encoder_byte]))
        f.flush()
        os.replace(path + ".new", path)
        self.path, self.file = path, f

    def append(self, frame):
        """Append one frame (raises OSError on a full disk and the like)."""
        if self.file is None:
            self._open()
        self.file.write(frame)
        self.unread += 1

    def read(self, limit):
        """Up to ``limit`` frames not yet read back, in order."""
        if not self.unread:
            return []
        f = self.file
        f.flush()
        f.seek(self.read_pos)
        frames = []
        while len(frames) < min(limit, self.unread):
            head = f.read(4)
            if len(head) < 4:
                break
            (n,) = struct.unpack(">L", head)
            body = f.read(n)
            if len(body) < n:
                break
            frames.append(head + body)
        self.read_pos = f.tell()
        f.seek(0, os.SEEK_END)
        self.unread -= len(frames)
        if not self.unread:
            # Everything read back: start the file over.
            f.truncate(HEADER_LEN)
            self.read_pos = HEADER_LEN
        return frames

    def write_final(self, frames):
        """At exit: ``frames`` (what was in memory, oldest first) followed
        by what is still unread here, into one new file for the next
        handler; this file is removed. Returns the records kept."""
        rest = self.read(self.unread) if self.unread else []
        frames = list(frames) + rest
        if frames:
            os.makedirs(self.dir, exist_ok=True)
            name = "%020d-%d-%s-exit" % (time.time_ns(), os.getpid(), self.sender_id)
            tmp = os.path.join(self.dir, name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(MAGIC + bytes([self.encoder_byte]))
                f.write(b"".join(frames))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(self.dir, name + SUFFIX))
        self.discard()
        return len(frames)

    def discard(self):
        """Remove this process's file (everything in it is elsewhere now)."""
        if self.file is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.forget()

    def forget(self):
        """Close without touching the file (a forked child's copy)."""
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
        self.file = self.path = None
        self.unread = 0
        self.read_pos = HEADER_LEN
