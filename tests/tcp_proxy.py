"""A TCP proxy to a database server, in threads of the test process, that can be paused: paused, it
passes no byte either way but keeps every connection open, as a server or a network path that stops
answering does."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

from sqlalchemy.engine import URL


class PausableProxy:
    """Listens on 127.0.0.1 (``port``) and forwards each connection to ``host:port`` of the target."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.closed = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: URL, **query: str) -> URL:
        """``url`` going through the proxy, with ``query`` added to its query parameters."""
        return url.set(host="127.0.0.1", port=self.port).update_query_dict(query)

    def pause(self) -> None:
        self.forwarding.clear()

    def resume(self) -> None:
        self.forwarding.set()

    def close(self) -> None:
        self.closed = True
        self.forwarding.set()
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while not self.closed:
                self.forwarding.wait()
                ready, _, _ = select.select([source], [], [], 0.05)
                if not ready or not self.forwarding.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except (OSError, ValueError):  # closed under the thread
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def proxy_to(url: URL) -> Iterator[PausableProxy]:
    """A :class:`PausableProxy` to the server of ``url``, closed afterwards."""
    proxy = PausableProxy(
        url.host or "127.0.0.1", url.port or {"postgresql": 5432}.get(url.get_backend_name(), 3306)
    )
    try:
        yield proxy
    finally:
        proxy.close()
