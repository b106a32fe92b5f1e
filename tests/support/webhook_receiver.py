"""A webhook receiver of the tests' own: https on loopback, verifying every delivery with the
official ``standardwebhooks`` library, answering what the test scripts (a status, or silence)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from local.fal_emulator.tls import LOOPBACK_CERT


@dataclass
class Delivery:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int | None  # the status sent back; None when the receiver stayed silent

    @property
    def payload(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


@dataclass
class WebhookReceiver:
    """``answers`` are used in order, one per request, then 200 for good. An answer of 0 is a
    receiver that hangs past the notifier's read timeout before it answers 200."""

    secret: str
    answers: list[int] = field(default_factory=list)
    hang_seconds: float = 12.0
    deliveries: list[Delivery] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self) -> dict[str, int]:
        """How many times each webhook id was answered 2xx."""
        counts: dict[str, int] = {}
        for delivery in self.deliveries:
            if delivery.answered is not None and 200 <= delivery.answered < 300:
                counts[delivery.webhook_id] = counts.get(delivery.webhook_id, 0) + 1
        return counts

    def wait_for(self, count: int, *, timeout: float = 30) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.deliveries) >= count:
                    return list(self.deliveries)
            time.sleep(0.1)
        raise AssertionError(f"the receiver got {len(self.deliveries)} requests, not {count}")

    def _answer(self, headers: dict[str, str], body: bytes) -> int:
        try:
            Webhook(self.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        with self._lock:
            answer = self.answers.pop(0) if self.answers else 200
        if answer == 0:
            time.sleep(self.hang_seconds)
            answer = 200
        with self._lock:
            self.deliveries.append(
                Delivery(headers.get("webhook-id", ""), headers, body, verified, answer)
            )
        return answer


@contextmanager
def webhook_receiver(
    secret: str, ca_file: str, answers: list[int] | None = None, *, port: int = 0
) -> Iterator[WebhookReceiver]:
    """Serves on 127.0.0.1 with the local stack's loopback certificate (its functions trust it);
    on ``port`` when a stack was started with this receiver's URL (NotifyUrl), else any."""
    receiver = WebhookReceiver(secret=secret, answers=list(answers or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            status = receiver._answer(headers, body)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the notifier gave up waiting

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(Path(ca_file).parent / LOOPBACK_CERT))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    receiver.url = f"https://127.0.0.1:{server.server_address[1]}/hooks/pika"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
