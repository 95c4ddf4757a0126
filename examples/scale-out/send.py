"""Log N records through a real logging.handlers.SocketHandler.

    python3 send.py PORT N TAG

Each record's message is "TAG <i>" on logger app.<TAG>; check.py looks
for every TAG and i. SocketHandler drops a record when the connection
is refused, so this waits for the port first.
"""
import logging
import logging.handlers
import socket
import sys
import time

port, n, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit(f"send.py: nothing listens on {port}")
        time.sleep(0.1)
handler = logging.handlers.SocketHandler("127.0.0.1", port)
log = logging.getLogger(f"app.{tag}")
log.propagate = False
log.setLevel(logging.DEBUG)
log.addHandler(handler)
for i in range(n):
    log.info("%s %d", tag, i)
handler.close()
