"""fal's queue API over HTTPS: submit, status, result, cancel, the media files and the JWKS.

Routes (as fal serves them; status/result/cancel drop the endpoint's subpath):
  POST /{owner}/{app}[/{subpath}][?fal_webhook=URL]   submit, to one of the Pika endpoints in
                                                      SCHEMAS (each its own input schema)
  GET  /{owner}/{app}/requests/{id}/status            status (?logs=true|false|1|0)
  GET  /{owner}/{app}/requests/{id}                   result
  PUT  /{owner}/{app}/requests/{id}/cancel            cancel
  GET  /files/{id}.mp4                                the rendered video
  GET  /.well-known/jwks.json                         the webhook signing keys
  GET  /v1/models/requests/by-endpoint                the Platform API's request history (see
                                                      Emulator.history)
Like a fal account, it runs at most ``concurrency`` requests at once (2, a new account's limit;
the local stack sets it from FalConcurrency, tests through /_emulator/account); the rest wait
IN_QUEUE, in order, with their queue position in status answers, and a request not started
within its X-Fal-Request-Timeout ends with fal's timeout error (504, X-Fal-Request-Timeout-Type:
user) and nothing rendered.
Control (for tests and the demo, not part of fal's API):
  GET  /_emulator/requests     every submission seen, with its outcome and deliveries, the
                               X-Fal-Object-Lifecycle-Preference it came with, when a runner
                               took it and gave it back (epoch seconds), and how many
                               accepted submits are still waiting for their (delayed) answer
  POST /_emulator/faults       queue up faults (see Faults)
  POST /_emulator/account       the account's settings: {"concurrency": N}
  POST /_emulator/faults/reset  forget every fault, queued or by chance (between tests)
  POST /_emulator/reset        forget requests and faults
  POST /_emulator/sign?request_id=ID   the signature headers fal would send with this body
  GET  /redirected/{id}.mp4    where a "redirect_private" video's 302 points (counted)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from local.fal_emulator.render import render_video
from local.fal_emulator.signing import WebhookSigner

PIKA_ENDPOINT = "fal-ai/pika/v2.1/image-to-video"
PIKA_V2_2_ENDPOINT = "fal-ai/pika/v2.2/image-to-video"
PIKA_TURBO_ENDPOINT = "fal-ai/pika/v2/turbo/image-to-video"
# Past the webhook's 8 MiB multipart threshold, so the copy takes more than one part.
LARGE_VIDEO_BYTES = 12 * 1024 * 1024


class PikaInput(BaseModel):
    """Pika v2.1 image-to-video input (fal's documented schema; the duration bounds are ours)."""

    model_config = ConfigDict(extra="ignore")

    image_url: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    seed: int | None = None
    negative_prompt: str = ""
    resolution: Literal["720p", "1080p"] = "720p"
    duration: int = Field(default=5, ge=1, le=10)


class PikaTurboInput(PikaInput):
    """Pika v2 turbo image-to-video input: fal documents the same fields as v2.1, duration a
    bare integer (https://fal.ai/models/fal-ai/pika/v2/turbo/image-to-video/llms.txt)."""


class PikaV22Input(PikaInput):
    """Pika v2.2 image-to-video input: duration is an enum of 5 or 10, anything else a 422
    (https://fal.ai/models/fal-ai/pika/v2.2/image-to-video/llms.txt)."""

    duration: Literal[5, 10] = 5


# What each endpoint accepts; an endpoint not here answers 404, as fal does for unknown apps.
SCHEMAS: dict[str, type[PikaInput]] = {
    PIKA_ENDPOINT: PikaInput,
    PIKA_V2_2_ENDPOINT: PikaV22Input,
    PIKA_TURBO_ENDPOINT: PikaTurboInput,
}


@dataclass
class Faults:
    """Queues of faults, each consumed by the next submission (FIFO).

    submit:   HTTP statuses to answer a submit with instead of accepting it (e.g. 429, 500);
              null accepts that submission, so a fault can be aimed at a later one.
    submit_delay: seconds to wait before answering an accepted submit (the request is queued
              first, as fal does, so a client that times out and retries creates a second one).
    outcome:  "ok" | "error" | "validation_error" | "payload_error" for the next requests.
    delivery: "normal" | "drop" | "duplicate" | "late" for the next requests' webhooks.
    history:  "listed" | "hidden" for the next requests: a hidden one is not (yet) in fal's
              request history, as one fal has not indexed would not be.
    history_errors: HTTP statuses to answer the next request-history reads with (e.g. 503).
    media:    how the next requests' videos are served: "normal", "large" (padded past the
              multipart threshold), "truncated_once" (the first download breaks off), "wrong_size"
              (file_size off by one), "not_mp4", "redirect_private" (a 302 to 169.254.169.254),
              "foreign_host" (a URL on a host no allowlist has).
    """

    submit: deque[int | None] = field(default_factory=deque)
    submit_delay: deque[float] = field(default_factory=deque)
    outcome: deque[str] = field(default_factory=deque)
    delivery: deque[str] = field(default_factory=deque)
    media: deque[str] = field(default_factory=deque)
    history: deque[str] = field(default_factory=deque)
    history_errors: deque[int] = field(default_factory=deque)
    # Faults by chance, for load runs: {"submit": {"429": 0.05}, "delivery": {"drop": 0.05},
    # "outcome": {"error": 0.02}, "media": {"not_mp4": 0.02}} (each a probability per
    # submission; FIFO faults come first).
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    processing_seconds: float = 0.0
    late_seconds: float = 5.0
    fast: bool = False


@dataclass
class FalRequest:
    request_id: str
    app: str
    arguments: dict[str, Any]
    webhook_url: str | None
    start_timeout: str | None = None  # X-Fal-Request-Timeout, as sent
    lifecycle_preference: str | None = None  # X-Fal-Object-Lifecycle-Preference, as sent
    status: str = "IN_QUEUE"
    outcome: str = "ok"
    delivery: str = "normal"
    media: str = "normal"
    listed: bool = True  # shown by the request history
    downloads: int = 0
    redirects_followed: int = 0
    output: dict[str, Any] | None = None
    error_body: dict[str, Any] | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    submitted_at: float = field(default_factory=time.time)
    cancelled: bool = False
    timed_out: bool = False  # not started within its start timeout
    # When a runner took it and when it gave the runner back: the account's busy slot-time.
    started_at: float | None = None
    finished_at: float | None = None

    def start_deadline(self) -> float | None:
        return None if self.start_timeout is None else self.submitted_at + float(self.start_timeout)


class Emulator:
    def __init__(
        self, *, host: str, port: int, signer: WebhookSigner, fal_key: str, concurrency: int = 2
    ) -> None:
        self.base_url = f"https://{host}:{port}"
        self.signer = signer
        self.fal_key = fal_key
        self.faults = Faults()
        self.requests: dict[str, FalRequest] = {}
        self.rejected_submits: list[dict[str, Any]] = []
        self.answers_held = 0  # submits queued whose answer is still being held back (a delay)
        self.files: dict[str, bytes] = {}
        self.lock = threading.Lock()
        # The account's queue: requests wait here, in order, until a runner is free.
        self.waiting: deque[FalRequest] = deque()
        self.running = 0
        # The account's concurrency limit: requests that run at once; the rest wait IN_QUEUE.
        self.concurrency = concurrency
        self.peak_outstanding = 0  # the most requests queued or running at once
        self.scheduled = threading.Condition(self.lock)
        threading.Thread(target=self._schedule, name="fal-queue", daemon=True).start()
        self.delivery_retry_delays = [0.5, 1, 2, 4, 8, 15, 30, 60, 120, 240]

    # --- queue API -------------------------------------------------------------------------

    def submit(
        self,
        app: str,
        body: bytes,
        webhook_url: str | None,
        start_timeout: str | None = None,
        lifecycle_preference: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        schema = SCHEMAS.get(app)
        if schema is None:
            return 404, {"detail": f"Application {app!r} not found"}
        with self.lock:
            if self.faults.submit:
                status = self.faults.submit.popleft() or 0
            else:
                status = int(self._by_chance("submit") or 0)
            if status:
                self.rejected_submits.append(
                    {
                        "app": app,
                        "status": status,
                        "webhook_url": webhook_url,
                        "lifecycle_preference": lifecycle_preference,
                        "at": time.time(),
                    }
                )
                return status, _fault_body(status)
        try:
            arguments = json.loads(body or b"{}")
            schema.model_validate(arguments)
        except (json.JSONDecodeError, ValidationError) as exc:
            return 422, {"detail": _detail(exc)}
        request_id = str(uuid.uuid4())
        with self.lock:
            request = FalRequest(request_id, app, arguments, webhook_url)
            request.start_timeout = start_timeout
            request.lifecycle_preference = lifecycle_preference
            request.outcome = (
                self.faults.outcome.popleft() if self.faults.outcome else self._by_chance("outcome")
            ) or "ok"
            request.delivery = (
                self.faults.delivery.popleft()
                if self.faults.delivery
                else self._by_chance("delivery")
            ) or "normal"
            request.media = (
                self.faults.media.popleft() if self.faults.media else self._by_chance("media")
            ) or "normal"
            request.listed = (self.faults.history.popleft() if self.faults.history else "") != (
                "hidden"
            )
            self.requests[request_id] = request
            position = len(self.waiting)
            self.waiting.append(request)
            self.peak_outstanding = max(self.peak_outstanding, len(self.waiting) + self.running)
            self.scheduled.notify()
        with self.lock:
            stall = self._by_chance("submit_delay")  # a rate keyed by the delay in seconds
            delay = (
                self.faults.submit_delay.popleft()
                if self.faults.submit_delay
                else float(stall or 0.0)
            )
        if delay:
            with self.lock:
                self.answers_held += 1
            try:
                time.sleep(delay)
            finally:
                with self.lock:
                    self.answers_held -= 1
        return 200, {**self._urls(request), "status": "IN_QUEUE", "queue_position": position}

    def _by_chance(self, kind: str) -> str | None:
        roll = random.random()
        for fault, probability in self.faults.rates.get(kind, {}).items():
            if roll < probability:
                return fault
            roll -= probability
        return None

    def status(self, request_id: str, with_logs: bool) -> tuple[int, dict[str, Any]]:
        request = self.requests.get(request_id)
        if request is None:
            return 404, {"detail": "Request not found"}
        body: dict[str, Any] = {**self._urls(request), "status": request.status}
        if request.status == "IN_QUEUE":
            with self.lock:
                body["queue_position"] = self._position(request)
        else:
            body["logs"] = [] if with_logs else None
        if request.status == "COMPLETED":
            body["metrics"] = {"inference_time": 1.0}
            if request.error_body is not None:
                body["error"] = str(request.error_body.get("detail"))
                body["error_type"] = "model_error"
            return 200, body
        return 202, body

    def result(self, request_id: str) -> tuple[int, dict[str, Any]]:
        request = self.requests.get(request_id)
        if request is None:
            return 404, {"detail": "Request not found"}
        if request.status != "COMPLETED":
            return 400, {"detail": "Request is still in progress"}
        if request.timed_out:
            return 504, {"detail": "Request timed out before it could start"}
        if request.error_body is not None:
            return _error_status(request), request.error_body
        return 200, request.output or {}

    def cancel(self, request_id: str) -> tuple[int, dict[str, Any]]:
        request = self.requests.get(request_id)
        if request is None:
            return 404, {"status": "NOT_FOUND"}
        if request.status == "COMPLETED":
            return 400, {"status": "ALREADY_COMPLETED"}
        request.cancelled = True
        with self.lock:
            if request in self.waiting:  # a queued request leaves the queue at once
                self.waiting.remove(request)
                request.status = "COMPLETED"
                request.error_body = {"detail": "Request was cancelled"}
        return 202, {"status": "CANCELLATION_REQUESTED"}

    # --- the Platform API's request history ------------------------------------------------

    def history(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """``GET /v1/models/requests/by-endpoint`` as fal documents it (endpoint_id required;
        start/end, status, request_id filters; expand=payloads; limit/cursor pages). Where fal's
        docs are silent the emulator chooses: requests still queued or running are listed (with
        no ended_at nor status_code), and start/end filter on when the request was received."""
        with self.lock:
            if self.faults.history_errors:
                status = self.faults.history_errors.popleft()
                return status, _fault_body(status)
        one = {name: values[-1] for name, values in query.items() if values}
        endpoint = one.get("endpoint_id")
        try:
            limit = int(one.get("limit", "50"))
            page = int(base64.b64decode(one["cursor"]).decode()) if "cursor" in one else 1
            start = _instant(one["start"]) if "start" in one else time.time() - 86400
            end = _instant(one["end"]) if "end" in one else None
        except (ValueError, binascii.Error):
            return 422, {"detail": "Invalid query"}
        if not endpoint or not 1 <= limit <= 100 or page < 1:
            return 422, {"detail": "Invalid query"}
        payloads = "payloads" in ",".join(query.get("expand", []))
        with self.lock:
            matching = [
                r
                for r in self.requests.values()
                if r.listed
                and r.app == endpoint
                and r.submitted_at >= start
                and (end is None or r.submitted_at < end)
                and one.get("request_id", r.request_id) == r.request_id
                and one.get("status", _history_status(r)) == _history_status(r)
            ]
            # fal sorts by end time; in the emulator the ones still open come last.
            matching.sort(key=lambda r: (r.finished_at is None, r.finished_at or r.submitted_at))
            items = [
                self._history_item(r, payloads) for r in matching[(page - 1) * limit : page * limit]
            ]
        more = page * limit < len(matching)
        cursor = base64.b64encode(str(page + 1).encode()).decode() if more else None
        return 200, {"items": items, "next_cursor": cursor, "has_more": more}

    def _history_item(self, request: FalRequest, payloads: bool) -> dict[str, Any]:
        ended = request.status == "COMPLETED"
        item: dict[str, Any] = {
            "request_id": request.request_id,
            "endpoint_id": request.app,
            "sent_at": _iso(request.submitted_at),
            "started_at": _iso(request.started_at),
            "ended_at": _iso(request.finished_at or time.time()) if ended else None,
            "status_code": (_error_status(request) if request.error_body else 200)
            if ended
            else None,
            "duration": (
                round(request.finished_at - request.started_at, 3)
                if request.finished_at and request.started_at
                else None
            ),
        }
        if payloads:
            item["json_input"] = request.arguments
            item["json_output"] = (request.error_body or request.output) if ended else None
        return item

    # --- the account's queue ---------------------------------------------------------------

    def _position(self, request: FalRequest) -> int:
        return next((i for i, r in enumerate(self.waiting) if r is request), 0)

    def _schedule(self) -> None:
        """Starts waiting requests in order while runners are free; ends those whose start
        timeout passed while they waited (fal checks it before a runner takes the request)."""
        while True:
            with self.lock:
                self.scheduled.wait(timeout=0.1)
                now = time.time()
                for request in [r for r in self.waiting if (r.start_deadline() or now) < now]:
                    self.waiting.remove(request)
                    threading.Thread(target=self._time_out, args=(request,), daemon=True).start()
                started = []
                while self.waiting and self.running < self.concurrency:
                    started.append(self.waiting.popleft())
                    started[-1].started_at = now
                    self.running += 1
            for request in started:
                threading.Thread(target=self._run_slot, args=(request,), daemon=True).start()

    def _run_slot(self, request: FalRequest) -> None:
        try:
            self._run(request)
        finally:
            with self.lock:
                request.finished_at = time.time()
                self.running -= 1
                self.scheduled.notify()

    def _time_out(self, request: FalRequest) -> None:
        request.timed_out = True
        request.error_body = {"detail": "Request timed out before it could start"}
        request.status = "COMPLETED"
        self._announce(request)

    # --- the work ------------------------------------------------------------------------

    def _run(self, request: FalRequest) -> None:
        if request.cancelled:  # cancelled while it waited: it never runs
            request.status = "COMPLETED"
            request.error_body = {"detail": "Request was cancelled"}
            return
        request.status = "IN_PROGRESS"
        time.sleep(self.faults.processing_seconds)
        if request.cancelled:
            request.status = "COMPLETED"
            request.error_body = {"detail": "Request was cancelled"}
            return
        try:
            request.output = self._generate(request)
        except Exception as exc:
            request.error_body = {
                "detail": [
                    {"loc": ["body", "image_url"], "msg": str(exc), "type": "image_load_error"}
                ]
            }
        if request.outcome == "error":
            request.output, request.error_body = None, {"detail": "Internal server error"}
        elif request.outcome == "validation_error":
            request.output = None
            request.error_body = {
                "detail": [
                    {
                        "loc": ["body", "prompt"],
                        "msg": "The prompt was flagged by the content checker",
                        "type": "content_policy_violation",
                    }
                ]
            }
        request.status = "COMPLETED"
        self._announce(request)

    def _announce(self, request: FalRequest) -> None:
        if request.webhook_url and request.delivery != "drop":
            # Deliveries (and their retries) run on their own threads: a webhook that keeps
            # failing must not hold up the rendering of other requests.
            delay = self.faults.late_seconds if request.delivery == "late" else 0.0
            for _ in range(2 if request.delivery == "duplicate" else 1):
                threading.Thread(target=self._deliver, args=(request, delay), daemon=True).start()

    def _generate(self, request: FalRequest) -> dict[str, Any]:
        arguments = SCHEMAS[request.app].model_validate(request.arguments)
        with urllib.request.urlopen(arguments.image_url, timeout=30) as response:  # noqa: S310
            image = response.read()
        video = render_video(
            image,
            resolution=arguments.resolution,
            duration=arguments.duration,
            fast=self.faults.fast,
        )
        if request.media == "large":
            padding = LARGE_VIDEO_BYTES - len(video)
            video += padding.to_bytes(4, "big") + b"free" + bytes(padding - 8)
        elif request.media == "not_mp4":
            video = b"<html><body>502 Bad Gateway</body></html>"
        with self.lock:
            self.files[request.request_id] = video
        url = f"{self.base_url}/files/{request.request_id}.mp4"
        if request.media == "foreign_host":
            url = f"https://media.example.invalid/files/{request.request_id}.mp4"
        return {
            "video": {
                "url": url,
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": len(video) + (1 if request.media == "wrong_size" else 0),
            }
        }

    def download(self, request_id: str) -> tuple[str, bytes | None]:
        """How to serve a video: ("ok"|"truncate"|"redirect", bytes)."""
        with self.lock:
            request = self.requests.get(request_id)
            video = self.files.get(request_id)
            if request is None or video is None:
                return "missing", None
            request.downloads += 1
            if request.media == "redirect_private":
                return "redirect", None
            if request.media == "truncated_once" and request.downloads == 1:
                return "truncate", video
            return "ok", video

    def envelope(self, request: FalRequest) -> dict[str, Any]:
        base = {"request_id": request.request_id, "gateway_request_id": request.request_id}
        if request.outcome == "payload_error":
            return {
                **base,
                "status": "OK",
                "payload": None,
                "error": None,
                "payload_error": "Response payload is not JSON serializable. Either return a "
                "JSON serializable object or use the queue endpoint to retrieve the response.",
            }
        if request.error_body is not None:
            return {
                **base,
                "status": "ERROR",
                "error": f"Invalid status code: {_error_status(request)}",
                "payload": request.error_body,
            }
        return {**base, "status": "OK", "payload": request.output, "error": None}

    def _deliver(self, request: FalRequest, delay: float) -> None:
        assert request.webhook_url
        time.sleep(delay)
        # Real deliveries serialize with sorted keys and Python's default separators.
        body = json.dumps(self.envelope(request), sort_keys=True).encode("utf-8")
        for delay in [0.0, *self.delivery_retry_delays]:
            time.sleep(delay)
            headers = {
                "Content-Type": "application/json",
                **self.signer.headers(request.request_id, body),
            }
            http_request = urllib.request.Request(  # noqa: S310
                request.webhook_url, data=body, headers=headers, method="POST"
            )
            status: int | str
            try:
                with urllib.request.urlopen(http_request, timeout=15) as response:  # noqa: S310
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError as exc:
                status = type(exc).__name__
            with self.lock:
                # Kept whole so tests can replay or tamper with a genuinely signed delivery.
                request.deliveries.append(
                    {
                        "status": status,
                        "at": time.time(),
                        "url": request.webhook_url,
                        "headers": headers,
                        "body": body.decode("utf-8"),
                    }
                )
            if isinstance(status, int) and 200 <= status < 300:
                return

    def _urls(self, request: FalRequest) -> dict[str, str]:
        owner, alias = request.app.split("/")[:2]
        base = f"{self.base_url}/{owner}/{alias}/requests/{request.request_id}"
        return {
            "request_id": request.request_id,
            "gateway_request_id": request.request_id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }

    # --- control -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": [
                    {
                        "request_id": r.request_id,
                        "app": r.app,
                        "arguments": r.arguments,
                        "webhook_url": r.webhook_url,
                        "start_timeout": r.start_timeout,
                        "lifecycle_preference": r.lifecycle_preference,
                        "status": r.status,
                        "timed_out": r.timed_out,
                        "outcome": r.outcome,
                        "delivery": r.delivery,
                        "media": r.media,
                        # Whether it rendered a video (an outcome "ok" can still fail: fal
                        # could not fetch the image).
                        "made_video": r.output is not None,
                        "cancelled": r.cancelled,
                        "started_at": r.started_at,
                        "finished_at": r.finished_at,
                        "downloads": r.downloads,
                        "redirects_followed": r.redirects_followed,
                        "deliveries": list(r.deliveries),
                    }
                    for r in self.requests.values()
                ],
                "rejected_submits": list(self.rejected_submits),
                "answers_held": self.answers_held,
                "concurrency": self.concurrency,
                "queued": len(self.waiting),
                "running": self.running,
                "peak_outstanding": self.peak_outstanding,
            }

    def set_faults(self, spec: dict[str, Any]) -> None:
        with self.lock:
            for name in (
                "submit",
                "submit_delay",
                "outcome",
                "delivery",
                "media",
                "history",
                "history_errors",
            ):
                getattr(self.faults, name).extend(spec.get(name, []))
            for name in ("processing_seconds", "late_seconds", "fast", "rates"):
                if name in spec:
                    setattr(self.faults, name, spec[name])

    def set_account(self, spec: dict[str, Any]) -> None:
        """The account's settings, which outlive a faults reset: its concurrency limit."""
        with self.lock:
            self.concurrency = int(spec.get("concurrency", self.concurrency))
            self.scheduled.notify()

    def reset_faults(self) -> None:
        with self.lock:
            self.faults = Faults()

    def reset(self) -> None:
        with self.lock:
            self.faults = Faults()
            self.requests.clear()
            self.rejected_submits.clear()
            self.files.clear()
            self.peak_outstanding = len(self.waiting) + self.running


def _detail(exc: Exception) -> list[dict[str, Any]]:
    if isinstance(exc, ValidationError):
        return [
            {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
            for error in exc.errors()
        ]
    return [{"loc": ["body"], "msg": "Invalid JSON body", "type": "value_error.jsondecode"}]


def _error_status(request: FalRequest) -> int:
    """The HTTP status of a failed request's result: 504 when it never started in time, 500 for
    fal's own failure (not charged, fal FAQ), 422 for what the input caused."""
    if request.timed_out:
        return 504
    if request.outcome == "error":
        return 500
    return 422


def _history_status(request: FalRequest) -> str | None:
    """The history's status filter: success, error (fal's fault) or user_error (the input's)."""
    if request.status != "COMPLETED":
        return None
    if request.error_body is None:
        return "success"
    return "error" if _error_status(request) >= 500 else "user_error"


def _instant(value: str) -> float:
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {"detail": "Too many requests", "error_type": "rate_limited"}
    if status == 422:
        return {
            "detail": [
                {"loc": ["body", "image_url"], "msg": "Unsupported image", "type": "value_error"}
            ]
        }
    if status in (401, 403):
        return {"detail": "Invalid API key"}
    return {"detail": "Internal server error", "error_type": "internal_error"}


def make_handler(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no delayed-ACK stall: see local/fault_proxy.py

        def log_message(self, format: str, *args: Any) -> None:
            status = args[1] if len(args) > 1 else ""
            print(f"fal-emulator {self.command} {self.path.split('?')[0]} {status}", flush=True)

        def do_GET(self) -> None:
            path, query = self._route()
            if path == "/.well-known/jwks.json":
                return self._json(200, emulator.signer.jwks())
            if path == "/_emulator/requests":
                return self._json(200, emulator.describe())
            if path == "/v1/models/requests/by-endpoint":
                if not self._authorized():
                    return self._json(401, {"detail": "No credentials or invalid key"})
                return self._json(*emulator.history(query))
            if path.startswith("/files/") and path.endswith(".mp4"):
                return self._serve_file(path[len("/files/") : -len(".mp4")])
            if path.startswith("/redirected/") and path.endswith(".mp4"):
                return self._serve_redirected(path[len("/redirected/") : -len(".mp4")])
            parts = path.strip("/").split("/")
            if len(parts) == 5 and parts[2] == "requests" and parts[4] == "status":
                logs = query.get("logs", ["false"])[0] in ("1", "true")
                return self._json(*emulator.status(parts[3], logs))
            if len(parts) == 4 and parts[2] == "requests":
                status, body = emulator.result(parts[3])
                # fal marks a request that timed out before starting so clients never retry it.
                timeout = {"X-Fal-Request-Timeout-Type": "user"} if status == 504 else {}
                return self._json(status, body, timeout)
            return self._json(404, {"detail": "Not found"})

        def do_POST(self) -> None:
            path, query = self._route()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if path == "/_emulator/faults":
                emulator.set_faults(json.loads(body or b"{}"))
                return self._json(200, {"ok": True})
            if path == "/_emulator/account":
                emulator.set_account(json.loads(body or b"{}"))
                return self._json(200, {"ok": True})
            if path == "/_emulator/faults/reset":
                emulator.reset_faults()
                return self._json(200, {"ok": True})
            if path == "/_emulator/sign":
                # Signs any body as fal signs its deliveries, so tests can send bodies fal never
                # would (malformed, naming another request) that still pass the signature check.
                request_id = query.get("request_id", [""])[0]
                return self._json(200, emulator.signer.headers(request_id, body))
            if path == "/_emulator/reset":
                emulator.reset()
                return self._json(200, {"ok": True})
            if not self._authorized():
                return self._json(401, {"detail": "No credentials or invalid key"})
            app = path.strip("/")
            if app.count("/") < 1:
                return self._json(404, {"detail": "Not found"})
            webhook = query.get("fal_webhook", [None])[0]
            start_timeout = self.headers.get("X-Fal-Request-Timeout")
            lifecycle = self.headers.get("X-Fal-Object-Lifecycle-Preference")
            return self._json(*emulator.submit(app, body, webhook, start_timeout, lifecycle))

        def do_PUT(self) -> None:
            path, _ = self._route()
            parts = path.strip("/").split("/")
            if len(parts) == 5 and parts[2] == "requests" and parts[4] == "cancel":
                return self._json(*emulator.cancel(parts[3]))
            return self._json(404, {"detail": "Not found"})

        def _serve_file(self, request_id: str) -> None:
            how, video = emulator.download(request_id)
            if how == "missing":
                return self._json(404, {"detail": "File not found"})
            if how == "redirect":
                # To a loopback address that serves the real video: a client that followed it
                # would store the video, so a test sees the difference.
                self.send_response(302)
                self.send_header("Location", f"{emulator.base_url}/redirected/{request_id}.mp4")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            assert video is not None
            if how == "truncate":
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(video)))
                self.end_headers()
                self.wfile.write(video[: len(video) // 2])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return None
            return self._send(200, video, "video/mp4")

        def _serve_redirected(self, request_id: str) -> None:
            with emulator.lock:
                request = emulator.requests.get(request_id)
                video = emulator.files.get(request_id)
                if request is not None:
                    request.redirects_followed += 1
            if video is None:
                return self._json(404, {"detail": "File not found"})
            return self._send(200, video, "video/mp4")

        def _authorized(self) -> bool:
            return self.headers.get("Authorization", "") == f"Key {emulator.fal_key}"

        def _route(self) -> tuple[str, dict[str, list[str]]]:
            parts = urlsplit(self.path)
            return parts.path, parse_qs(parts.query)

        def _json(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            self._send(status, json.dumps(body).encode("utf-8"), "application/json", headers)

        def _send(
            self,
            status: int,
            payload: bytes,
            content_type: str,
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-fal-request-id", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def serve(emulator: Emulator, port: int, context: Any) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(emulator))
    server.daemon_threads = True
    # Handshake in the request's thread, so one slow client cannot stall the accept loop.
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    return server
