"""Writing one HTTP response from a BaseHTTPRequestHandler: the local servers' shared habit."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


def reply(
    handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes
) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        if name.lower() != "content-length":
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)
