"""A loopback TCP forwarder that can go down: the network between a part and what it talks to (PostgreSQL,
the storage emulator), cut and restored by a test. Down, it closes every open connection and resets each
new one at once, as a dependency that is restarting or unreachable does."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator


class Outage:
    def __init__(self, target: tuple[str, int] | str) -> None:
        """`target` is (host, port) or the path of a Unix socket."""
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._down = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stopped = False
        self.refused = 0  # connections reset while down
        threading.Thread(target=self._accept, name="outage-accept", daemon=True).start()

    # ---- switches -----------------------------------------------------------------------------------
    def down(self) -> None:
        self._down.set()
        with self._lock:
            for s in list(self._open):
                _close(s)
            self._open.clear()

    def up(self) -> None:
        self._down.clear()

    @contextlib.contextmanager
    def cut(self) -> Iterator[None]:
        self.down()
        try:
            yield
        finally:
            self.up()

    def down_for(self, seconds: float) -> threading.Thread:
        """Go down now and come back up after `seconds` (in the background)."""
        self.down()

        def later() -> None:
            time.sleep(seconds)
            self.up()

        thread = threading.Thread(target=later, name="outage-timer", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stopped = True
        self.down()
        _close(self._listener)

    # ---- forwarding ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down.is_set():
                self.refused += 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                _close(client)
                continue
            try:
                upstream = self._connect()
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _connect(self) -> socket.socket:
        if isinstance(self._target, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self._target)
            return s
        s = socket.create_connection(self._target, timeout=5)
        s.settimeout(None)
        return s

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
