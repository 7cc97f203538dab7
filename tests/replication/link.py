"""A TCP link between the arrays that a test can cut and heal (a real proxy).

It can also add a fixed delay to every hop, like the distance between two
sites: independent consistency groups drift apart over such a link, which is
what the collapse control needs to show.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time


class CuttableLink:
    """Forwards 127.0.0.1:port -> target; `cut` drops every connection and refuses new ones."""

    def __init__(self, target: str, delay: float = 0.0) -> None:
        self.delay = delay
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.up = threading.Event()
        self.up.set()
        self.closed = False
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def retarget(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.connections.clear()

    def heal(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Forward source -> sink; each chunk leaves `delay` after it came (latency, no rate cap)."""
        backlog: queue.Queue[tuple[float, bytes] | None] = queue.Queue()

        def deliver() -> None:
            with contextlib.suppress(OSError):
                while (item := backlog.get()) is not None:
                    due, data = item
                    time.sleep(max(0.0, due - time.monotonic()))
                    sink.sendall(data)

        sender = threading.Thread(target=deliver, daemon=True)
        sender.start()
        try:
            while data := source.recv(65536):
                backlog.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        finally:
            backlog.put(None)
            sender.join(5)
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self.lock:
                self.connections.discard(source)
                self.connections.discard(sink)
