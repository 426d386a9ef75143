"""Demo workload for `make run`: TCP connects and direct-I/O writes, forever.

Runs inside the demo zone "busy" so its TCP and disk meters have data.  It
listens on a loopback port of its own and writes to a scratch file it
removes on exit.
"""

import mmap
import os
import signal
import socket
import sys
import tempfile
import time


def main():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    port = server.getsockname()[1]
    fd, path = tempfile.mkstemp(prefix="st-demo-", dir="/var/tmp")
    os.close(fd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        out = os.open(path, os.O_WRONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 65536)
        i = 0
        while True:
            client = socket.create_connection(("127.0.0.1", port))
            conn, _ = server.accept()
            client.sendall(b"x" * 4096)
            conn.recv(4096)
            client.close()
            conn.close()
            os.pwrite(out, buf, (i % 64) * 65536)
            i += 1
            time.sleep(0.02)
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
