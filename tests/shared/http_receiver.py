"""A real HTTP(S) server on loopback that records what it receives: a webhook's receiver.

It answers each request with the next status of a script (then 200), so a test can make the
first delivery fail and see the retry. With a TLS context it records the SNI name each
handshake asked for.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @classmethod
    def read(cls, handler: BaseHTTPRequestHandler) -> Received:
        """The request ``handler`` is answering, its body read whole."""
        length = int(handler.headers.get("Content-Length", "0"))
        return cls(
            method=handler.command,
            path=handler.path,
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=handler.rfile.read(length),
        )


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    sni_names: list[str | None] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout_s)
            return list(self.requests)


@contextmanager
def receiver(
    statuses: Sequence[int] = (),
    *,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
) -> Iterator[Receiver]:
    script = list(statuses)
    extra_headers = headers or {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received = Received.read(self)
            status = script.pop(0) if script else 200
            self.send_response(status)
            for name, value in extra_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with state.arrived:
                state.requests.append(received)
                state.arrived.notify_all()

        do_GET = do_POST

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test reads what arrived; stderr noise helps no one

    server = ThreadingHTTPServer((host, 0), Handler)
    state = Receiver(port=int(server.server_address[1]))
    with serving(server, tls=tls, sni_names=state.sni_names):
        yield state


@contextmanager
def serving(
    server: ThreadingHTTPServer, *, tls: ssl.SSLContext | None, sni_names: list[str]
) -> Iterator[None]:
    """``server`` answering on its own thread until the block ends; with ``tls``, over TLS,
    recording the SNI name each handshake asked for in ``sni_names``."""
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: sni_names.append(name)  # type: ignore[assignment]
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
