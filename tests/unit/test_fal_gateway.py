"""How each answer fal can give a submit becomes a domain error: for good, or retried later."""

from __future__ import annotations

from typing import Any

import fal_client
import httpx
import pytest

from pika_pipeline.errors import FalRequestFailed, FalUnavailable
from pika_pipeline.fal_gateway import _domain_error
from pika_pipeline.jobs import ErrorCode


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


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_retried_later(status: int) -> None:
    error = refusal(status, "busy", error_type="rate_limited" if status == 429 else None)

    assert isinstance(error, FalUnavailable)
    assert f"HTTP {status}" in str(error)


def test_any_other_refusal_fails_the_job_with_fals_answer() -> None:
    error = refusal(404, "Application not found")

    assert isinstance(error, FalRequestFailed)
    assert error.code == ErrorCode.FAL_ERROR
    assert "HTTP 404: Application not found" in error.message
