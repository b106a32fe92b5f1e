"""The webhook's answers: each refusal's HTTP status; and when fal's signing keys cannot be
fetched, 503, so fal delivers again, with nothing read or written meanwhile."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pika_pipeline.errors import RejectionReason, SigningKeysUnavailable
from pika_pipeline.webhook.service import WebhookRequest, WebhookService, status_of
from pika_pipeline.webhook.tokens import new_attempt, token_for
from pika_pipeline.webhook.verifier import JwksKeys, WebhookVerifier

TOKEN_KEY = "stack-generated-token-key"


def _headers() -> dict[str, str]:
    """Well-formed and current: only the keys could tell whether the signature is fal's."""
    return {
        "x-fal-webhook-request-id": "req-1",
        "x-fal-webhook-user-id": "user",
        "x-fal-webhook-timestamp": str(int(time.time())),
        "x-fal-webhook-signature": "00" * 64,
    }


class Untouchable:
    """Stands where the jobs table and the video store would be: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was used while fal's keys were unavailable")


class FailingJwks:
    def __init__(self) -> None:
        self.fetches = 0

    def __call__(self, url: str) -> bytes:
        self.fetches += 1
        raise OSError("connection refused")


def _service(fetch: FailingJwks) -> WebhookService:
    verifier = WebhookVerifier(JwksKeys("https://rest.fal.ai/.well-known/jwks.json", fetch))
    return WebhookService(
        repository=Untouchable(),  # type: ignore[arg-type]
        verifier=verifier,
        recorder=Untouchable(),  # type: ignore[arg-type]
        token_key=lambda: TOKEN_KEY,
        max_body_bytes=256 * 1024,
    )


def _request() -> WebhookRequest:
    attempt = new_attempt()
    job_id = "0" * 32
    query = {"job_id": job_id, "attempt": attempt, "token": token_for(job_id, attempt, TOKEN_KEY)}
    return WebhookRequest(query=query, headers=_headers(), body=b'{"request_id": "req-1"}')


def test_a_jwks_outage_answers_503_so_fal_delivers_again_and_nothing_is_touched() -> None:
    fetch = FailingJwks()

    response = _service(fetch).handle(_request())

    assert (response.status_code, response.body) == (503, {"error": "signing_keys_unavailable"})
    assert fetch.fetches == 1


def test_during_an_outage_a_flood_of_deliveries_does_not_hammer_the_jwks_endpoint() -> None:
    fetch = FailingJwks()
    service = _service(fetch)

    answers = {service.handle(_request()).status_code for _ in range(20)}

    assert answers == {503}
    assert fetch.fetches == 1


def test_a_failed_fetch_is_a_typed_error_that_names_no_secret() -> None:
    keys = JwksKeys("https://rest.fal.ai/.well-known/jwks.json", FailingJwks())

    with pytest.raises(SigningKeysUnavailable, match="connection refused"):
        keys.current()


def test_every_rejection_reason_has_its_http_answer() -> None:
    # The webhook's edge answers; the reasons themselves know nothing of HTTP.
    answers = {str(reason): status_of(reason) for reason in RejectionReason}

    assert answers == {
        "body_too_large": 413,
        "malformed_body": 400,
        "bad_token": 401,
        "missing_signature_header": 401,
        "wrong_user_id": 401,
        "malformed_timestamp": 401,
        "stale_timestamp": 401,
        "malformed_signature": 401,
        "bad_signature": 401,
        "request_id_mismatch": 401,
        "foreign_request_id": 401,
    }
