"""fal's queue API through the official fal_client, with its errors mapped to domain errors.

Imported only by fal_on_demand, when a job first needs fal: the webhook function never loads
fal_client, and the submit and reconciler functions not before they call fal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

import fal_client
import httpx

from pika_pipeline.errors import FalRequestFailed, FalUnavailable, FalUnavailableKind
from pika_pipeline.fal.delivery import FalDelivery
from pika_pipeline.fal.errors import describe_detail
from pika_pipeline.jobs.error_codes import ErrorCode

# fal_client retries these itself; if they still fail, the queue message is retried later.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
# How long fal keeps the media a request makes (docs.fal.ai/documentation/model-apis/
# media-expiration): here the output video; not the request's JSON payloads (30 days unless
# X-Fal-Store-IO: 0), nor the input image, which is our presigned URL, not a file on fal's CDN.
LIFECYCLE_HEADER = "X-Fal-Object-Lifecycle-Preference"
# fal_client puts the webhook URL, per-attempt token included, in the submit URL's query: httpx
# logs each request URL at INFO, fal_client its retries (URL and error) at DEBUG.
_URL_LOGGING_LIBRARIES = ("httpx", "httpcore", "fal_client")


def quiet_url_logging() -> None:
    """Keeps the libraries that log request URLs at WARNING, whatever the root logger's level
    (Lambda's ApplicationLogLevel, a debugging session): a token must never reach a log."""
    for name in _URL_LOGGING_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


class FalGateway:
    """Safe to share between threads (a fill submits the jobs it dispatched concurrently):
    fal_client's calls keep no state between them, and its httpx.Client's connection pool
    takes a lock (httpcore's ThreadLock). Only that client's creation, on fal_client's first
    call and without a lock, could run twice at once: the first submit goes alone."""

    def __init__(
        self,
        *,
        key: str,
        timeout_seconds: float,
        start_timeout_seconds: float,
        media_lifetime_seconds: int = 0,
    ) -> None:
        """Every call names its endpoint: the one its job recorded when it was queued.
        ``media_lifetime_seconds`` (0: none) is how long fal may keep the video it makes."""
        quiet_url_logging()
        self._first_call = threading.Lock()
        self._warm = False
        self._start_timeout = start_timeout_seconds
        self._headers = (
            {LIFECYCLE_HEADER: json.dumps({"expiration_duration_seconds": media_lifetime_seconds})}
            if media_lifetime_seconds
            else {}
        )
        self._client = fal_client.SyncClient(key=key, default_timeout=timeout_seconds)

    def submit(self, arguments: dict[str, Any], *, webhook_url: str, endpoint: str) -> str:
        """Queues one generation at ``endpoint`` and returns fal's request id.

        start_timeout does two things: fal drops a request it could not start before the job's
        deadline or the image URL's expiry (nothing is paid for; see
        SubmitSettings.fal_start_timeout_seconds), and fal_client does not re-POST a submit
        whose answer timed out, which would queue a second paid request for the same call. A
        lost answer surfaces as FalUnavailable; the job's open attempt still recognises its
        result.
        """
        if not self._warm:
            with self._first_call:
                try:
                    return self._submit(arguments, webhook_url=webhook_url, endpoint=endpoint)
                finally:
                    self._warm = True  # the client exists now, whatever fal answered
        return self._submit(arguments, webhook_url=webhook_url, endpoint=endpoint)

    def _submit(self, arguments: dict[str, Any], *, webhook_url: str, endpoint: str) -> str:
        try:
            handle = self._client.submit(
                endpoint,
                arguments=arguments,
                webhook_url=webhook_url,
                start_timeout=self._start_timeout,
                headers=self._headers,
            )
        except fal_client.FalClientHTTPError as exc:
            raise _domain_error(exc) from None
        except (httpx.TransportError, fal_client.FalClientTimeoutError) as exc:
            raise _no_answer(exc) from None
        return str(handle.request_id)

    def outcome(self, request_id: str, *, endpoint: str) -> FalDelivery | None:
        """What became of a request made at ``endpoint``, as the delivery fal would have sent;
        None while it runs."""
        try:
            status = self._client.status(endpoint, request_id)
            if not isinstance(status, fal_client.Completed):
                return None
            try:
                output = self._client.result(endpoint, request_id)
            except fal_client.FalClientHTTPError as exc:
                # A failed request's result is its error: the same body an ERROR webhook carries.
                detail = exc.message if isinstance(exc.message, list) else str(exc.message)
                return FalDelivery(
                    request_id=request_id,
                    status="ERROR",
                    error=f"Invalid status code: {exc.status_code}",
                    payload={"detail": detail},
                )
        except fal_client.FalClientHTTPError as exc:
            raise FalUnavailable(
                f"fal answered HTTP {exc.status_code} about {request_id}",
                kind=_kind_of_status(exc.status_code),
            ) from None
        except (httpx.TransportError, fal_client.FalClientTimeoutError) as exc:
            raise _no_answer(exc) from None
        return FalDelivery(request_id=request_id, status="OK", payload=output)

    def cancel(self, request_id: str, *, endpoint: str) -> None:
        """Best effort: a request that finished meanwhile cannot be cancelled, and that is fine."""
        with contextlib.suppress(fal_client.FalClientHTTPError, httpx.TransportError):
            self._client.cancel(endpoint, request_id)


def _domain_error(exc: fal_client.FalClientHTTPError) -> Exception:
    status = exc.status_code
    if status == 422:
        return FalRequestFailed(ErrorCode.FAL_VALIDATION, describe_detail(exc.message))
    if status in (401, 403):
        return FalRequestFailed(
            ErrorCode.FAL_AUTH, f"fal refused the API key (HTTP {status}); check the secret."
        )
    if status in _RETRYABLE_STATUSES or status >= 500:
        return FalUnavailable(
            f"fal answered HTTP {status} ({exc.error_type or 'no error type'})",
            kind=_kind_of_status(status),
            created_nothing=True,
        )
    return FalRequestFailed(ErrorCode.FAL_ERROR, f"fal answered HTTP {status}: {exc.message}")


def _kind_of_status(status: int) -> FalUnavailableKind:
    if status == 408:
        return FalUnavailableKind.TIMEOUT
    if status == 409:
        return FalUnavailableKind.CONFLICT
    if status == 429:
        return FalUnavailableKind.RATE_LIMITED
    if status >= 500:
        return FalUnavailableKind.SERVER_ERROR
    return FalUnavailableKind.UNAVAILABLE


def _no_answer(exc: Exception) -> FalUnavailable:
    timed_out = isinstance(exc, (httpx.TimeoutException, fal_client.FalClientTimeoutError))
    return FalUnavailable(
        f"fal did not answer: {type(exc).__name__}",
        kind=FalUnavailableKind.TIMEOUT if timed_out else FalUnavailableKind.UNREACHABLE,
        # A connection never made sent nothing; any later failure may have queued a request.
        created_nothing=isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)),
    )
