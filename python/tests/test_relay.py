"""Unit suite for logrelay.RelayHandler, against small receivers written
here: one that speaks logrelay-ack/1 and /2 as logrelay does (per-sender
last sequence, confirmations, goodbye), and one that behaves as the Python
logging cookbook's listener (reads plain frames, closes on an empty one).

Run: PYTHONPATH=python python3 -m unittest discover -s python/tests -v
(`cargo test --test it relay::python_unit_suite` runs it too).
"""

import io
import logging
import logging.config
import logging.handlers
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from contextlib import redirect_stderr

import logrelay
from logrelay import spool as lspool
from logrelay.relay import MAGIC_V1, MAGIC_V2, GOODBYE

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class AckReceiver:
    """A logrelay-ack receiver: keeps every payload, confirms each batch,
    remembers the last sequence per sender across connections (as a
    logrelay that keeps running does). ``token``: require /2 with it."""

    def __init__(self, port=0, token=None):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.token = token
        self.payloads = []
        self.hellos = []
        self.last = {}
        self.lock = threading.Lock()
        self.conns = []
        self.closing = False
        self.vanish = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            head = recv_exact(conn, 4 + 15)
            magic = head[4:]
            enc = recv_exact(conn, 1)[0]
            (n,) = struct.unpack(">H", recv_exact(conn, 2))
            sid = recv_exact(conn, n).decode()
            token = None
            if magic == MAGIC_V2:
                (m,) = struct.unpack(">H", recv_exact(conn, 2))
                token = recv_exact(conn, m).decode()
            self.hellos.append((magic, enc, sid, token))
            if self.token is not None and token != self.token:
                conn.close()
                return
            conn.sendall(magic + struct.pack(">Q", self.last.get(sid, 0)))
            while True:
                seq, count = struct.unpack(">QL", recv_exact(conn, 12))
                got = []
                for _ in range(count):
                    (ln,) = struct.unpack(">L", recv_exact(conn, 4))
                    got.append(recv_exact(conn, ln))
                with self.lock:
                    if seq > self.last.get(sid, 0):
                        self.payloads.extend(got)
                        self.last[sid] = seq
                if self.closing:
                    conn.sendall(struct.pack(">QQ", seq, GOODBYE))
                    return
                if self.vanish:
                    # As a receiver killed after writing, before confirming.
                    self.vanish = False
                    return
                conn.sendall(struct.pack(">Q", seq))
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def records(self):
        with self.lock:
            return [pickle.loads(p) for p in self.payloads]

    def messages(self):
        return [r["msg"] for r in self.records()]

    def wait(self, n, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.payloads) >= n:
                return True
            time.sleep(0.01)
        return False

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


class PlainListener:
    """The cookbook listener's behaviour: plain frames, and an empty frame
    (our handshake) ends the connection with an error."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.records = []
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            while True:
                (n,) = struct.unpack(">L", recv_exact(conn, 4))
                if n == 0:
                    self.refused += 1  # pickle.loads(b"") raises EOFError
                    return
                self.records.append(pickle.loads(recv_exact(conn, n)))
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def make_logger(handler, name="t"):
    log = logging.getLogger("%s.%d" % (name, id(handler)))
    log.propagate = False
    log.setLevel(1)
    log.handlers[:] = [handler]
    return log


class RoundTrip(unittest.TestCase):
    def test_records_arrive_once_in_order_and_pickles_match_makepickle(self):
        r = AckReceiver()
        h = logrelay.RelayHandler("127.0.0.1", r.port)
        log = make_logger(h)
        for i in range(2500):
            log.info("msg %d", i)
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("boom")
        self.assertTrue(h.flush(10))
        h.close()
        msgs = r.messages()
        self.assertEqual(msgs[:2500], ["msg %d" % i for i in range(2500)])
        self.assertEqual(len(msgs), 2501)
        last = r.records()[-1]
        self.assertIn("ZeroDivisionError", last["exc_text"])
        self.assertIsNone(last["args"])
        magic, enc, sid, token = r.hellos[0]
        self.assertEqual((magic, enc, token), (MAGIC_V1, 0, None))
        self.assertTrue(sid.startswith("py-%d-" % os.getpid()))
        # Byte-identical to SocketHandler.makePickle (minus the prefix).
        rec = logging.makeLogRecord({"msg": "x %s", "args": (1,), "name": "n"})
        frame = logging.handlers.SocketHandler("h", 1).makePickle(rec)
        self.assertEqual(h._encode(rec), frame)
        r.close()

    def test_emit_queues_exactly_makepickles_frames(self):
        # emit() inlines makePickle (issue 18): the same bytes for plain
        # records, extra= fields, exceptions and a record already formatted;
        # a subclass with its own makePickle gets it called.
        port = free_port()
        h = logrelay.RelayHandler("127.0.0.1", port, close_timeout=0.1)
        sock = logging.handlers.SocketHandler("h", 1)
        try:
            1 / 0
        except ZeroDivisionError:
            ei = sys.exc_info()
        recs = [
            logging.makeLogRecord({"msg": "x %s", "args": (1,), "name": "n"}),
            logging.LogRecord("a.b", 20, "/p.py", 3, "m %d %s", (4, "é"), None),
            logging.LogRecord("a.b", 40, "/p.py", 3, "boom", (), ei),
            logging.makeLogRecord({"msg": "extra", "user": "ann", "ids": [1, 2], "message": "stale"}),
        ]
        want = []
        for rec in recs:
            h.emit(rec)
            rec.exc_text = None  # makePickle sets it again, as emit did
            want.append(sock.makePickle(rec))
        with h._lock:
            got = h._queue_frames()
        self.assertEqual(got, want)

        class Own(logrelay.RelayHandler):
            def makePickle(self, record):
                return b"\0\0\0\x01X"

        o = Own("127.0.0.1", port, close_timeout=0.1)
        o.emit(recs[0])
        o.emit(recs[1])
        with o._lock:
            self.assertEqual(o._queue_frames(), [b"\0\0\0\x01X"] * 2)
        with redirect_stderr(io.StringIO()):
            h.close()
            o.close()

    def test_unix_socket_and_json_encoder(self):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "s.sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen(1)
        got = []

        def serve():
            conn, _ = srv.accept()
            recv_exact(conn, 19)
            enc = recv_exact(conn, 1)[0]
            (n,) = struct.unpack(">H", recv_exact(conn, 2))
            recv_exact(conn, n)
            got.append(enc)
            conn.sendall(MAGIC_V1 + struct.pack(">Q", 0))
            seq, count = struct.unpack(">QL", recv_exact(conn, 12))
            for _ in range(count):
                (ln,) = struct.unpack(">L", recv_exact(conn, 4))
                got.append(recv_exact(conn, ln))
            conn.sendall(struct.pack(">Q", seq))
            conn.recv(1)
            conn.close()
            srv.close()

        threading.Thread(target=serve, daemon=True).start()
        h = logrelay.RelayHandler(path, None, encoder="json")
        make_logger(h).warning("über %s", "json")
        self.assertTrue(h.flush(10))
        h.close()
        import json

        self.assertEqual(got[0], 1)
        self.assertEqual(json.loads(got[1])["msg"], "über json")

    def test_reconnect_resends_unconfirmed_without_duplicates(self):
        r = AckReceiver()
        h = logrelay.RelayHandler("127.0.0.1", r.port)
        log = make_logger(h)
        for i in range(100):
            log.info("a %d", i)
        self.assertTrue(h.flush(10))
        # The receiver says goodbye after the next batch...
        r.closing = True
        for i in range(100):
            log.info("b %d", i)
        self.assertTrue(h.flush(10))
        r.closing = False
        # ... then takes the next one without confirming it and hangs up:
        # the handler sends it again, and it is not written twice.
        r.vanish = True
        for i in range(100):
            log.info("c %d", i)
        self.assertTrue(h.flush(10))
        h.close()
        msgs = r.messages()
        self.assertEqual(msgs, ["%s %d" % (x, i) for x in "abc" for i in range(100)])
        self.assertGreaterEqual(len(r.hellos), 3)
        self.assertEqual(len({sid for _, _, sid, _ in r.hellos}), 1)
        r.close()


class QueueFull(unittest.TestCase):
    def _fill(self, when_full, n=12, **kw):
        port = free_port()  # nothing listens yet
        h = logrelay.RelayHandler("127.0.0.1", port, queue_records=5, when_full=when_full, **kw)
        log = make_logger(h)
        t0 = time.monotonic()
        for i in range(n):
            log.info("m %d", i)
        took = time.monotonic() - t0
        return h, port, took

    def _deliver(self, h, port, n):
        r = AckReceiver(port)
        self.assertTrue(r.wait(n), r.messages())
        self.assertTrue(h.flush(10))
        h.close()
        r.close()
        return r.records()

    def test_drop_newest_keeps_the_first_and_reports_the_drops(self):
        h, port, took = self._fill("drop_newest")
        self.assertLess(took, 0.5)
        self.assertEqual(h.dropped, 7)
        recs = self._deliver(h, port, 6)
        self.assertEqual([r["msg"] for r in recs[:5]], ["m %d" % i for i in range(5)])
        warn = recs[5]
        self.assertEqual((warn["name"], warn["levelname"]), ("logrelay.handler", "WARNING"))
        self.assertIn("dropped 7 record(s)", warn["msg"])
        self.assertEqual(warn["dropped"], 7)
        self.assertEqual(len(recs), 6)

    def test_drop_oldest_keeps_the_last(self):
        h, port, _ = self._fill("drop_oldest")
        self.assertEqual(h.dropped, 7)
        recs = self._deliver(h, port, 6)
        self.assertEqual([r["msg"] for r in recs[:5]], ["m %d" % i for i in range(7, 12)])
        self.assertIn("dropped 7 record(s)", recs[5]["msg"])

    def test_block_waits_block_timeout_then_drops(self):
        h, port, took = self._fill("block", n=7, block_timeout=0.2)
        self.assertEqual(h.dropped, 2)
        self.assertGreaterEqual(took, 0.35)
        self.assertLess(took, 2.0)
        recs = self._deliver(h, port, 6)
        self.assertEqual([r["msg"] for r in recs[:5]], ["m %d" % i for i in range(5)])

    def test_block_resumes_as_soon_as_there_is_room(self):
        r = AckReceiver()
        h = logrelay.RelayHandler("127.0.0.1", r.port, queue_records=10, block_timeout=5)
        log = make_logger(h)
        for i in range(3000):
            log.info("m %d", i)
        self.assertTrue(h.flush(10))
        self.assertEqual(h.dropped, 0)
        self.assertEqual(len(r.payloads), 3000)
        h.close()
        r.close()


class Chunks(unittest.TestCase):
    """The queue is a few large buffers (issue 18): records across chunk
    boundaries, records larger than a chunk, a chunk's record limit, drops
    in the middle of a chunk and the spool at exit all keep every record,
    in order, with the same bytes."""

    def test_records_across_chunks_while_down_arrive_in_order(self):
        from logrelay import relay as lrelay

        port = free_port()  # nothing listens yet
        h = logrelay.RelayHandler("127.0.0.1", port)
        log = make_logger(h)
        big = "x" * (lrelay.CHUNK_BYTES + 10)
        want = []
        for i in range(5000):
            if i % 1700 == 5:
                log.info("big %d %s", i, big)
                want.append("big %d %s" % (i, big))
            else:
                log.info("m %d", i)  # small: a chunk fills by its record limit
                want.append("m %d" % i)
        with h._lock:
            self.assertGreater(len(h._chunks), 3)
            self.assertEqual(h._queued, 5000)
        r = AckReceiver(port)
        self.assertTrue(h.flush(15))
        self.assertEqual(r.messages(), want)
        # Chunks are reused: the queue is empty, a few spares are kept.
        with h._lock:
            self.assertEqual(h._queued, 0)
            self.assertLessEqual(len(h._spare), lrelay.SPARE_MAX)
        for i in range(3000):
            log.info("n %d", i)
        self.assertTrue(h.flush(15))
        self.assertEqual(r.messages()[5000:], ["n %d" % i for i in range(3000)])
        h.close()
        r.close()

    def test_drop_oldest_across_chunks(self):
        port = free_port()
        h = logrelay.RelayHandler("127.0.0.1", port, queue_records=2500, when_full="drop_oldest")
        log = make_logger(h)
        for i in range(6000):
            log.info("m %d", i)
        self.assertEqual(h.dropped, 3500)
        r = AckReceiver(port)
        self.assertTrue(r.wait(2501))
        self.assertTrue(h.flush(10))
        msgs = r.messages()
        self.assertEqual(msgs[:2500], ["m %d" % i for i in range(3500, 6000)])
        self.assertIn("dropped 3500 record(s)", msgs[2500])
        h.close()
        r.close()

    def test_unsent_records_in_chunks_go_to_the_spool_at_exit(self):
        d = tempfile.mkdtemp()
        port = free_port()
        h = logrelay.RelayHandler("127.0.0.1", port, spool_dir=d, close_timeout=0.2, queue_records=1000)
        log = make_logger(h)
        for i in range(2500):  # 1000 queued in chunks, the rest spooled
            log.info("m %d", i)
        with redirect_stderr(io.StringIO()):
            h.close()
        r = AckReceiver(port)
        with redirect_stderr(io.StringIO()):
            h2 = logrelay.RelayHandler("127.0.0.1", port, spool_dir=d)
            self.assertTrue(r.wait(2500))
            self.assertTrue(h2.flush(10))
            h2.close()
        self.assertEqual(r.messages(), ["m %d" % i for i in range(2500)])
        r.close()


class Spool(unittest.TestCase):
    def test_torn_tail_is_skipped_counted_and_the_file_removed(self):
        d = tempfile.mkdtemp()
        frames = [logging.handlers.SocketHandler("h", 1).makePickle(
            logging.makeLogRecord({"msg": "old %d" % i, "name": "old"})) for i in range(3)]
        path = os.path.join(d, "%020d-1-dead%s" % (1, lspool.SUFFIX))
        with open(path, "wb") as f:
            f.write(lspool.MAGIC + b"\0" + b"".join(frames) + frames[0][:7])
        # A file of another encoder and a foreign file are left alone.
        other = os.path.join(d, "%020d-2-json%s" % (2, lspool.SUFFIX))
        with open(other, "wb") as f:
            f.write(lspool.MAGIC + b"\1")
        r = AckReceiver()
        err = io.StringIO()
        with redirect_stderr(err):
            h = logrelay.RelayHandler("127.0.0.1", r.port, spool_dir=d)
            make_logger(h).info("new")
            self.assertTrue(h.flush(10))
            h.close()
        self.assertEqual(r.messages(), ["old 0", "old 1", "old 2", "new"])
        self.assertEqual(h.spool_torn, 1)
        self.assertIn("torn", err.getvalue())
        self.assertFalse(os.path.exists(path))
        self.assertTrue(os.path.exists(other))
        r.close()

    def test_overflow_goes_to_the_spool_and_comes_back_in_order(self):
        d = tempfile.mkdtemp()
        port = free_port()
        h = logrelay.RelayHandler("127.0.0.1", port, queue_records=50, spool_dir=d)
        log = make_logger(h)
        for i in range(400):
            log.info("m %d", i)
        self.assertEqual(h.dropped, 0)
        self.assertEqual(len([n for n in os.listdir(d) if n.endswith(".spool")]), 1)
        r = AckReceiver(port)
        self.assertTrue(h.flush(15))
        h.close()
        self.assertEqual(r.messages(), ["m %d" % i for i in range(400)])
        self.assertEqual(os.listdir(d), [])
        r.close()

    def test_unconfirmed_at_exit_are_spooled_for_the_next_process(self):
        d = tempfile.mkdtemp()
        port = free_port()
        code = (
            "import logging, logrelay\n"
            "h = logrelay.RelayHandler('127.0.0.1', %d, spool_dir=%r, close_timeout=0.3)\n"
            "log = logging.getLogger('x'); log.addHandler(h); log.setLevel(1)\n"
            "for i in range(30): log.info('m %%d', i)\n" % (port, d)
        )
        env = dict(os.environ, PYTHONPATH=PYDIR)
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("30 unconfirmed record(s) kept in spool_dir", p.stderr)
        r = AckReceiver(port)
        h = logrelay.RelayHandler("127.0.0.1", port, spool_dir=d)
        with redirect_stderr(io.StringIO()):
            self.assertTrue(r.wait(30))
            self.assertTrue(h.flush(10))
            h.close()
        self.assertEqual(r.messages(), ["m %d" % i for i in range(30)])
        self.assertEqual(os.listdir(d), [])
        r.close()


class Fallback(unittest.TestCase):
    def test_plain_listener_gets_plain_frames_and_stderr_says_so_once(self):
        p = PlainListener()
        err = io.StringIO()
        with redirect_stderr(err):
            h = logrelay.RelayHandler("127.0.0.1", p.port)
            log = make_logger(h)
            for i in range(50):
                log.info("m %d", i)
            self.assertTrue(h.flush(10))
            h.close()
        end = time.monotonic() + 5
        while len(p.records) < 50 and time.monotonic() < end:
            time.sleep(0.01)
        self.assertEqual([r["msg"] for r in p.records], ["m %d" % i for i in range(50)])
        self.assertEqual(err.getvalue().count("does not speak"), 1, err.getvalue())
        p.close()

    def test_token_is_sent_in_a_v2_handshake_and_a_refusal_is_reported(self):
        d = tempfile.mkdtemp()
        tok = os.path.join(d, "token")
        with open(tok, "w") as f:
            f.write("s3cret\n")
        r = AckReceiver(token="s3cret")
        h = logrelay.RelayHandler("127.0.0.1", r.port, token_file=tok)
        make_logger(h).info("with token")
        self.assertTrue(h.flush(10))
        h.close()
        self.assertEqual(r.hellos[0][0], MAGIC_V2)
        self.assertEqual(r.hellos[0][3], "s3cret")
        self.assertEqual(r.messages(), ["with token"])
        r.close()

        r = AckReceiver(token="other")
        err = io.StringIO()
        with redirect_stderr(err):
            h = logrelay.RelayHandler("127.0.0.1", r.port, token_file=tok, close_timeout=0.5)
            make_logger(h).info("refused")
            self.assertFalse(h.flush(1.0))
            h.close()
        self.assertEqual(err.getvalue().count("refused the token"), 1, err.getvalue())
        self.assertNotIn("does not speak", err.getvalue())
        self.assertEqual(r.payloads, [])
        r.close()


class Config(unittest.TestCase):
    def test_dictconfig_builds_it_with_its_options(self):
        d = tempfile.mkdtemp()
        logging.config.dictConfig({
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"relay": {
                "class": "logrelay.RelayHandler", "host": "127.0.0.1", "port": 9,
                "level": "INFO", "encoder": "json", "queue_records": 1000,
                "when_full": "drop_oldest", "block_timeout": 0.5, "spool_dir": d,
                "close_timeout": 1.5,
            }},
            "loggers": {"cfg": {"handlers": ["relay"], "propagate": False}},
        })
        h = logging.getLogger("cfg").handlers[0]
        self.assertIsInstance(h, logrelay.RelayHandler)
        self.assertIsInstance(h, logging.handlers.SocketHandler)
        self.assertEqual((h.host, h.port, h.level), ("127.0.0.1", 9, logging.INFO))
        self.assertEqual((h.encoder, h.queue_records, h.when_full), ("json", 1000, "drop_oldest"))
        self.assertEqual((h.block_timeout, h.spool_dir, h.close_timeout), (0.5, d, 1.5))
        h.close()
        logging.getLogger("cfg").handlers.clear()

    def test_msgpack_encoder_frames_the_record_dict(self):
        try:
            import msgpack
        except ImportError:
            self.skipTest("needs msgpack")
        h = logrelay.RelayHandler("h", 1, encoder="msgpack")
        rec = logging.makeLogRecord({"msg": "x %s", "args": ("y",), "name": "n"})
        frame = h._encode(rec)
        (n,) = struct.unpack(">L", frame[:4])
        d = msgpack.unpackb(frame[4:], raw=False)
        self.assertEqual((n, d["msg"], d["args"], d["name"]), (len(frame) - 4, "x y", None, "n"))
        self.assertEqual(h._encoder_byte, 2)
        h.close()

    def test_bad_options_are_refused(self):
        with self.assertRaises(ValueError):
            logrelay.RelayHandler("h", 1, when_full="sometimes")
        with self.assertRaises(ValueError):
            logrelay.RelayHandler("h", 1, encoder="xml")


@unittest.skipUnless(hasattr(os, "fork"), "needs fork")
class Fork(unittest.TestCase):
    def test_a_child_sends_its_own_records_once_with_its_own_id(self):
        r = AckReceiver()
        port = free_port()
        # The parent's records are queued (nothing listens on `port`).
        h = logrelay.RelayHandler("127.0.0.1", port, close_timeout=0.2)
        log = make_logger(h)
        log.info("parent before fork")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                h.host, h.port = "127.0.0.1", r.port
                log.info("child %d", os.getpid())
                code = 0 if h.flush(10) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8, 0)
        self.assertEqual(r.messages(), ["child %d" % pid])
        self.assertTrue(r.hellos[0][2].startswith("py-%d-" % pid))
        with redirect_stderr(io.StringIO()):
            h.close()
        r.close()


if __name__ == "__main__":
    unittest.main()
