"""TCP servers on 127.0.0.1 for the storage and kill tests: a base accept loop, a pipe, a silent endpoint."""

from __future__ import annotations

import socket
import threading


def free_port() -> int:
    """A port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackServer:
    """A TCP server on a free 127.0.0.1 port; handle(conn) runs once per accepted connection."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.accepted, self.conns = self.sock.getsockname()[1], 0, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy a's bytes to b until a closes, then shut both down."""
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SilentServer(LoopbackServer):
    """Accepts TCP connections on 127.0.0.1, reads what comes, never answers: a hung S3 endpoint."""

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
