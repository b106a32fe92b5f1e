"""How each answer fal can give a submit becomes a domain error: for good, or retried later."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import fal_client
import httpx
import pytest

from pika_pipeline.errors import FalRequestFailed, FalUnavailable
from pika_pipeline.fal.gateway import FalGateway, _domain_error, _no_answer
from pika_pipeline.jobs.error_codes import ErrorCode


def refusal(status: int, message: Any, error_type: str | None = None) -> Exception:
    error = fal_client.FalClientHTTPError(
        message=message,
        status_code=status,
        response_headers={},
        response=httpx.Response(status),
    )
    error.error_type = error_type
    return _domain_error(error)


def test_a_422_fails_the_job_with_fals_detail_made_readable() -> None:
    detail = [{"loc": ["body", "image_url"], "msg": "Unsupported image", "type": "value_error"}]

    error = refusal(422, detail)

    assert isinstance(error, FalRequestFailed)
    assert (error.code, error.message) == (ErrorCode.FAL_VALIDATION, "image_url: Unsupported image")


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_fails_the_job_as_fal_auth(status: int) -> None:
    error = refusal(status, "Invalid API key")

    assert isinstance(error, FalRequestFailed)
    assert error.code == ErrorCode.FAL_AUTH
    assert f"HTTP {status}" in error.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (408, "fal_timeout"),
        (409, "fal_conflict"),
        (429, "fal_rate_limited"),
        (500, "fal_server_error"),
        (502, "fal_server_error"),
        (503, "fal_server_error"),
        (504, "fal_server_error"),
    ],
)
def test_throttling_and_server_errors_are_retried_later(status: int, kind: str) -> None:
    error = refusal(status, "busy", error_type="rate_limited" if status == 429 else None)

    assert isinstance(error, FalUnavailable)
    assert f"HTTP {status}" in str(error)
    assert error.kind == kind  # the FalErrors metric's error_type


def test_any_other_refusal_fails_the_job_with_fals_answer() -> None:
    error = refusal(404, "Application not found")

    assert isinstance(error, FalRequestFailed)
    assert error.code == ErrorCode.FAL_ERROR
    assert "HTTP 404: Application not found" in error.message


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (httpx.ReadTimeout("slow"), "fal_timeout"),
        (httpx.ConnectTimeout("slow"), "fal_timeout"),
        (fal_client.FalClientTimeoutError(10.0), "fal_timeout"),
        (httpx.ConnectError("refused"), "fal_unreachable"),
        (httpx.RemoteProtocolError("closed"), "fal_unreachable"),
    ],
)
def test_no_answer_is_retried_later_and_says_whether_fal_was_slow_or_unreachable(
    failure: Exception, kind: str
) -> None:
    error = _no_answer(failure)

    assert isinstance(error, FalUnavailable)
    assert error.kind == kind
    assert type(failure).__name__ in str(error)


@pytest.fixture
def everything_logged() -> Iterator[None]:
    """The root logger at DEBUG and the libraries' own levels unset, as a debugging session or
    Lambda's ApplicationLogLevel=DEBUG would leave them."""
    names = ("httpx", "httpcore", "fal_client")
    saved = logging.getLogger().level, {n: logging.getLogger(n).level for n in names}
    logging.getLogger().setLevel(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield
    logging.getLogger().setLevel(saved[0])
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("library", ["httpx", "httpcore", "fal_client"])
def test_the_libraries_that_log_request_urls_stay_quiet_once_a_gateway_exists(
    everything_logged: None, library: str
) -> None:
    # The submit URL's query carries the webhook URL and its token: httpx logs URLs at INFO,
    # fal_client its retries at DEBUG.
    FalGateway(key="k", timeout_seconds=1, start_timeout_seconds=1)

    assert not logging.getLogger(library).isEnabledFor(logging.INFO)
    assert logging.getLogger(library).isEnabledFor(logging.WARNING)
