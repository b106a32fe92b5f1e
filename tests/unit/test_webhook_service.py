"""The webhook's answers to requests it refuses before reading anything: fal's signing keys cannot
be fetched (503, so fal delivers again), an expired or altered URL, a body it cannot decode."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

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


def _query(expires_at: int | None = None) -> dict[str, str]:
    attempt = new_attempt()
    job_id = "0" * 32
    expires_at = int(time.time()) + 3600 if expires_at is None else expires_at
    return {
        "job_id": job_id,
        "attempt": attempt,
        "expires": str(expires_at),
        "token": token_for(job_id, attempt, expires_at, TOKEN_KEY),
    }


def _request(query: dict[str, str] | None = None) -> WebhookRequest:
    query = _query() if query is None else query
    return WebhookRequest(query=query, headers=_headers(), body='{"request_id": "req-1"}')


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
        "token_expired": 401,
        "signing_key_not_yet_known": 503,
    }


# --- the URL's expiry ---------------------------------------------------------------------------


def test_an_expired_url_is_refused_before_anything_is_read() -> None:
    fetch = FailingJwks()

    response = _service(fetch).handle(_request(_query(expires_at=int(time.time()) - 1)))

    assert (response.status_code, response.body) == (401, {"error": "token_expired"})
    assert fetch.fetches == 0


def test_a_url_whose_expiry_was_moved_later_is_refused() -> None:
    fetch = FailingJwks()
    query = _query(expires_at=int(time.time()) - 1)
    query["expires"] = str(int(time.time()) + 3600)

    response = _service(fetch).handle(_request(query))

    assert (response.status_code, response.body) == (401, {"error": "bad_token"})
    assert fetch.fetches == 0


@pytest.mark.parametrize("expires", [None, "", "soon", "-1", "1e9", " 1800000000"])
def test_a_url_without_a_well_formed_expiry_is_refused(expires: str | None) -> None:
    # URLs made before expiries existed are among these: the reconciler settles their jobs.
    fetch = FailingJwks()
    query = _query()
    if expires is None:
        del query["expires"]
    else:
        query["expires"] = expires

    response = _service(fetch).handle(_request(query))

    assert (response.status_code, response.body) == (401, {"error": "bad_token"})


# --- bodies it cannot read ----------------------------------------------------------------------


def _signing_service() -> tuple[WebhookService, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    document = json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]}).encode()
    verifier = WebhookVerifier(
        JwksKeys("https://rest.fal.ai/.well-known/jwks.json", lambda _: document)
    )
    service = WebhookService(
        repository=Untouchable(),  # type: ignore[arg-type]
        verifier=verifier,
        recorder=Untouchable(),  # type: ignore[arg-type]
        token_key=lambda: TOKEN_KEY,
        max_body_bytes=256 * 1024,
    )
    return service, key


def _signed_headers(key: Ed25519PrivateKey, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    message = f"req-1\nuser\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {
        "x-fal-webhook-request-id": "req-1",
        "x-fal-webhook-user-id": "user",
        "x-fal-webhook-timestamp": timestamp,
        "x-fal-webhook-signature": key.sign(message).hex(),
    }


@pytest.mark.parametrize("encoded", [False, True], ids=["text", "base64"])
def test_a_signed_body_nested_too_deeply_is_malformed_not_a_crash(encoded: bool) -> None:
    service, key = _signing_service()
    body = b"[" * 100_000 + b"]" * 100_000  # json.loads gives up with a RecursionError
    raw = base64.b64encode(body).decode() if encoded else body.decode()

    response = service.handle(
        WebhookRequest(
            query=_query(), headers=_signed_headers(key, body), body=raw, is_base64_encoded=encoded
        )
    )

    assert (response.status_code, response.body) == (400, {"error": "malformed_body"})


@pytest.mark.parametrize("raw", ["not base64!", "YWJj=ZGVm", "YQ"])
def test_a_body_that_is_not_base64_is_malformed_not_a_crash(raw: str) -> None:
    service, key = _signing_service()

    response = service.handle(
        WebhookRequest(
            query=_query(), headers=_signed_headers(key, b""), body=raw, is_base64_encoded=True
        )
    )

    assert (response.status_code, response.body) == (400, {"error": "malformed_body"})
