"""The HTTP side the local runtime's two front doors share (Function URL and Invoke API).

Each request is read whole and handed to ``respond``, which returns what to answer; the front
door only turns requests into events and results into responses, the handler runs in a worker
(``local/lambda_runtime/pool.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.lambda_runtime.http_reply import reply


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the path with its query string, as sent
    headers: dict[str, str]
    body: bytes
    source_ip: str


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    payload: bytes


def serve(*, port: int, respond: Callable[[Request], Response]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no delayed-ACK stall: see local/fault_proxy.py

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the function's own structured logs say what happened

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = respond(
                Request(
                    method=self.command,
                    target=self.path,
                    headers=dict(self.headers.items()),
                    body=body,
                    source_ip=self.client_address[0],
                )
            )
            reply(self, answer.status, answer.headers, answer.payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server
