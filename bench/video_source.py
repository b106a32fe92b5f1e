"""A local HTTPS "media host" that generates MP4-looking bytes on the fly.

``GET /video.mp4?size=N`` answers N bytes with a Content-Length: a valid ``ftyp`` box, then
zeros, written from one shared 1 MiB buffer. Nothing is ever held whole, so a 1 GB video costs
the server no memory and the copy's measurement sees only the copy. The certificate comes from a
throwaway ``trustme`` CA whose PEM the copying child trusts through SSL_CERT_FILE.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

CHUNK = bytes(1024 * 1024)
# ftyp box: size 24, major brand isom, minor version 0x200, compatible brands isom, iso2.
FTYP = (24).to_bytes(4, "big") + b"ftypisom" + (0x200).to_bytes(4, "big") + b"isomiso2"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no delayed-ACK stall: see local/fault_proxy.py

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        size = int(parse_qs(parts.query).get("size", ["0"])[0])
        if parts.path != "/video.mp4" or size < len(FTYP):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(FTYP)
        remaining = size - len(FTYP)
        view = memoryview(CHUNK)
        while remaining > 0:
            step = min(remaining, len(CHUNK))
            self.wfile.write(view[:step])
            remaining -= step


class VideoSource:
    """Serves generated videos over HTTPS on a loopback port, on a background thread."""

    def __init__(self, state_dir: Path) -> None:
        ca = trustme.CA(organization_name="pika-pipeline benchmark media host")
        certificate = ca.issue_cert("127.0.0.1")
        self.ca_file = state_dir / "bench-media-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, size: int) -> str:
        return f"https://127.0.0.1:{self.port}/video.mp4?size={size}"

    def __enter__(self) -> VideoSource:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
