"""fal's request history (Platform API ``GET /models/requests/by-endpoint``): the requests one
endpoint received since a time, with their input, so the reconciler can find a request whose
submit answer was lost instead of paying for a second one.

What fal documents (docs.fal.ai/platform-apis/v1/models/requests/by-endpoint, read 2026-12):
``Authorization: Key ...``; query ``endpoint_id`` (required), ``start``/``end`` (ISO 8601; start
defaults to 24 h ago), ``status``, ``request_id``, ``expand=payloads``, ``limit`` (1..100,
default 50), ``cursor``; the answer ``{"items": [{"request_id", "endpoint_id", "sent_at",
"started_at", "ended_at", "status_code", "duration", "json_input", "json_output"}],
"next_cursor", "has_more"}``. The docs do not say whether a request still queued or running is
listed, nor which time ``start`` filters on: see docs/DESIGN.md ("A submit whose answer was
lost").

Plain urllib3, not fal_client: fal_client has no call for it. The webhook function never
imports this module (it holds no fal key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3

from pika_pipeline.errors import FalHistoryUnavailable

PAGE_SIZE = 100  # fal's maximum
# A claim's window holds a few minutes of one endpoint's requests; past this many pages the
# answer is treated as unknown rather than read for the rest of the run.
MAX_PAGES = 20
MAX_PAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class PastRequest:
    """One request fal's history lists: its id, when fal received it, and its input."""

    request_id: str
    sent_at: str  # ISO 8601, as fal wrote it ("" when missing): orders matches
    image_url: str | None


class FalRequestHistory:
    def __init__(self, *, key: str, base_url: str, timeout_seconds: float) -> None:
        self._authorization = f"Key {key}"
        self._base_url = base_url.rstrip("/")
        self._http = urllib3.PoolManager(
            retries=False,
            timeout=urllib3.Timeout(connect=min(3.0, timeout_seconds), read=timeout_seconds),
        )

    def since(self, endpoint: str, start: datetime) -> list[PastRequest]:
        """Every request ``endpoint`` received from ``start`` on, with its input. Raises
        FalHistoryUnavailable when fal cannot say (unreachable, an error, too many pages)."""
        query: dict[str, str] = {
            "endpoint_id": endpoint,
            "start": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expand": "payloads",
            "limit": str(PAGE_SIZE),
        }
        found: list[PastRequest] = []
        for _ in range(MAX_PAGES):
            page = self._page(query)
            found.extend(_past_request(item) for item in page.get("items") or [])
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return found
            query["cursor"] = str(cursor)
        raise FalHistoryUnavailable(f"fal's history of {endpoint} has more than {MAX_PAGES} pages")

    def _page(self, query: dict[str, str]) -> dict[str, Any]:
        try:
            response = self._http.request(
                "GET",
                f"{self._base_url}/models/requests/by-endpoint",
                fields=query,
                headers={"Authorization": self._authorization, "Accept": "application/json"},
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise FalHistoryUnavailable(
                f"fal's history did not answer: {type(exc).__name__}"
            ) from None
        try:
            if response.status != 200:
                raise FalHistoryUnavailable(f"fal's history answered HTTP {response.status}")
            body = response.read(MAX_PAGE_BYTES + 1)
        except urllib3.exceptions.HTTPError as exc:
            raise FalHistoryUnavailable(f"fal's history broke off: {type(exc).__name__}") from None
        finally:
            response.release_conn()
        if len(body) > MAX_PAGE_BYTES:
            raise FalHistoryUnavailable("fal's history page is too large")
        try:
            page = json.loads(body)
        except ValueError:
            raise FalHistoryUnavailable("fal's history answered something not JSON") from None
        if not isinstance(page, dict):
            raise FalHistoryUnavailable("fal's history answered something not an object")
        return page


def _past_request(item: Any) -> PastRequest:
    if not isinstance(item, dict) or not item.get("request_id"):
        raise FalHistoryUnavailable("fal's history lists a request without an id")
    arguments = item.get("json_input")
    image_url = arguments.get("image_url") if isinstance(arguments, dict) else None
    return PastRequest(
        request_id=str(item["request_id"]),
        sent_at=str(item.get("sent_at") or ""),
        image_url=image_url if isinstance(image_url, str) else None,
    )
