"""fal's webhook signature (Ed25519), checked against published-style test vectors and own keys.

The vectors (``fal-webhook-vectors.json``, a copy of the shared reference file) carry a JWKS, a
fixed ``now`` and cases each with headers, body and whether it is valid.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pika_pipeline.errors import WebhookRejected
from pika_pipeline.webhook.service import status_of
from pika_pipeline.webhook.verifier import JwksKeys, WebhookVerifier, parse_jwks

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).with_name("fal-webhook-vectors.json")).read_text(encoding="utf-8")
)
NOW = float(VECTORS["now"])
JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
USER_ID = "github|1234567"


def vectors_fetch(url: str) -> bytes:
    return json.dumps(VECTORS["jwks"]).encode("utf-8")


def lowercase(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def vector_verifier(**kwargs: Any) -> WebhookVerifier:
    return WebhookVerifier(JwksKeys(JWKS_URL, vectors_fetch), clock=lambda: NOW, **kwargs)


def case_named(name: str) -> dict[str, Any]:
    cases: list[dict[str, Any]] = [c for c in VECTORS["cases"] if c["name"] == name]
    [case] = cases
    return case


VALID = case_named("valid")


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingFetch:
    """Serves JWKS documents, one per fetch (the last one repeats), and counts the fetches."""

    def __init__(self, *documents: bytes) -> None:
        self._documents = list(documents)
        self.urls: list[str] = []

    @property
    def count(self) -> int:
        return len(self.urls)

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return self._documents[min(len(self.urls), len(self._documents)) - 1]


def jwk(key: Ed25519PublicKey, kid: str = "test") -> dict[str, str]:
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x}


def jwks(*keys: Ed25519PrivateKey) -> bytes:
    return json.dumps({"keys": [jwk(k.public_key(), f"k{i}") for i, k in enumerate(keys)]}).encode()


def signed(
    key: Ed25519PrivateKey,
    body: bytes,
    *,
    request_id: str = "req-1",
    user_id: str = USER_ID,
    timestamp: int = int(NOW),
) -> dict[str, str]:
    """Lowercase headers of a delivery signed the way fal signs."""
    message = f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
    return {
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": user_id,
        "x-fal-webhook-timestamp": str(timestamp),
        "x-fal-webhook-signature": key.sign(message.encode("utf-8")).hex(),
    }


BODY = b'{"request_id": "req-1", "status": "OK", "payload": {"video": {"url": "https://v"}}}'


# --- the shared test vectors ------------------------------------------------------------------


def test_the_vectors_have_valid_and_invalid_cases() -> None:
    validity = [case["valid"] for case in VECTORS["cases"]]
    assert True in validity
    assert False in validity


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: case["name"])
def test_each_vector_verifies_exactly_as_it_says(case: dict[str, Any]) -> None:
    verifier = vector_verifier()
    headers = lowercase(case["headers"])
    body = case["body"].encode("utf-8")

    if case["valid"]:
        assert verifier.verify(headers, body) == headers["x-fal-webhook-request-id"]
    else:
        with pytest.raises(WebhookRejected) as info:
            verifier.verify(headers, body)
        assert status_of(info.value.reason) == 401


def test_verifying_the_vectors_fetches_the_jwks_from_the_configured_url() -> None:
    fetch = CountingFetch(json.dumps(VECTORS["jwks"]).encode())
    verifier = WebhookVerifier(JwksKeys(JWKS_URL, fetch), clock=lambda: NOW)

    verifier.verify(lowercase(VALID["headers"]), VALID["body"].encode())

    assert fetch.urls == [JWKS_URL]


def test_the_expected_user_id_is_accepted() -> None:
    verifier = vector_verifier(expected_user_id=USER_ID)

    request_id = verifier.verify(lowercase(VALID["headers"]), VALID["body"].encode())

    assert request_id == VALID["headers"]["X-Fal-Webhook-Request-Id"]


def test_a_delivery_signed_for_another_user_is_rejected() -> None:
    verifier = vector_verifier(expected_user_id="github|7654321")

    with pytest.raises(WebhookRejected):
        verifier.verify(lowercase(VALID["headers"]), VALID["body"].encode())


@pytest.mark.parametrize("offset", [0, 10, 300, -300])
def test_timestamps_within_five_minutes_of_now_are_accepted(offset: int) -> None:
    timestamp = int(VALID["headers"]["X-Fal-Webhook-Timestamp"])
    verifier = WebhookVerifier(JwksKeys(JWKS_URL, vectors_fetch), clock=lambda: timestamp + offset)

    verifier.verify(lowercase(VALID["headers"]), VALID["body"].encode())


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_timestamps_further_than_five_minutes_from_now_are_rejected(offset: int) -> None:
    # A correctly signed but replayed (or far-future) delivery.
    timestamp = int(VALID["headers"]["X-Fal-Webhook-Timestamp"])
    verifier = WebhookVerifier(JwksKeys(JWKS_URL, vectors_fetch), clock=lambda: timestamp + offset)

    with pytest.raises(WebhookRejected):
        verifier.verify(lowercase(VALID["headers"]), VALID["body"].encode())


@pytest.mark.parametrize(
    "header",
    [
        "x-fal-webhook-request-id",
        "x-fal-webhook-user-id",
        "x-fal-webhook-timestamp",
        "x-fal-webhook-signature",
    ],
)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_a_missing_signature_header_is_rejected(header: str, how: str) -> None:
    headers = lowercase(VALID["headers"])
    if how == "absent":
        del headers[header]
    else:
        headers[header] = ""

    with pytest.raises(WebhookRejected):
        vector_verifier().verify(headers, VALID["body"].encode())


# --- own keys ---------------------------------------------------------------------------------


def test_a_delivery_signed_with_a_key_of_the_jwks_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = WebhookVerifier(JwksKeys(JWKS_URL, CountingFetch(jwks(key))), clock=lambda: NOW)

    assert verifier.verify(signed(key, BODY, request_id="req-42"), BODY) == "req-42"


def test_a_delivery_signed_with_a_key_not_in_the_jwks_is_rejected() -> None:
    published, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verifier = WebhookVerifier(
        JwksKeys(JWKS_URL, CountingFetch(jwks(published))), clock=lambda: NOW
    )

    with pytest.raises(WebhookRejected):
        verifier.verify(signed(stranger, BODY), BODY)


@pytest.mark.parametrize(
    "body",
    [b"", b"{}\n", b"  {}  ", b'{"prompt": "caf\xc3\xa9"}\r\n', bytes(range(256))],
    ids=["empty", "trailing-newline", "padded", "utf8-crlf", "binary"],
)
def test_the_signature_covers_the_raw_body_bytes_exactly(body: bytes) -> None:
    key = Ed25519PrivateKey.generate()
    verifier = WebhookVerifier(JwksKeys(JWKS_URL, CountingFetch(jwks(key))), clock=lambda: NOW)
    headers = signed(key, body)

    assert verifier.verify(headers, body) == "req-1"
    for altered in (body.strip(), body + b"\n", b" " + body):
        if altered != body:
            with pytest.raises(WebhookRejected):
                verifier.verify(headers, altered)


@pytest.mark.parametrize("timestamp", ["soon", "1764000000.5", "", "0x1"])
def test_a_malformed_timestamp_is_rejected(timestamp: str) -> None:
    key = Ed25519PrivateKey.generate()
    verifier = WebhookVerifier(JwksKeys(JWKS_URL, CountingFetch(jwks(key))), clock=lambda: NOW)
    headers = signed(key, BODY)
    headers["x-fal-webhook-timestamp"] = timestamp

    with pytest.raises(WebhookRejected):
        verifier.verify(headers, BODY)


@pytest.mark.parametrize("signature", ["00" * 63, "00" * 65, "0" * 127, "g" * 128, "not hex"])
def test_a_malformed_signature_is_rejected(signature: str) -> None:
    key = Ed25519PrivateKey.generate()
    verifier = WebhookVerifier(JwksKeys(JWKS_URL, CountingFetch(jwks(key))), clock=lambda: NOW)
    headers = signed(key, BODY)
    headers["x-fal-webhook-signature"] = signature

    with pytest.raises(WebhookRejected):
        verifier.verify(headers, BODY)


def test_an_empty_jwks_rejects_every_delivery() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = WebhookVerifier(
        JwksKeys(JWKS_URL, CountingFetch(b'{"keys": []}')), clock=lambda: NOW
    )

    with pytest.raises(WebhookRejected):
        verifier.verify(signed(key, BODY), BODY)


# --- parsing the JWKS -------------------------------------------------------------------------


def test_parse_jwks_reads_the_vectors_two_unpadded_keys() -> None:
    keys = parse_jwks(json.dumps(VECTORS["jwks"]).encode())

    raw = [k.public_bytes(Encoding.Raw, PublicFormat.Raw) for k in keys]
    expected = [
        base64.urlsafe_b64decode(k["x"] + "=" * (-len(k["x"]) % 4)) for k in VECTORS["jwks"]["keys"]
    ]
    assert raw == expected
    assert len(raw) == 2


def test_parse_jwks_skips_keys_it_cannot_use() -> None:
    good = Ed25519PrivateKey.generate().public_key()
    document = {
        "keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "x": jwk(good)["x"], "y": "AA"},
            {"kty": "OKP", "crv": "X25519", "x": jwk(good)["x"]},
            {"kty": "OKP", "crv": "Ed25519", "x": "too-short"},
            {"kty": "OKP", "crv": "Ed25519", "x": "!!!not base64!!!"},
            {"kty": "OKP", "crv": "Ed25519"},
            {"x": jwk(good)["x"]},  # no kty/crv: not guessed to be Ed25519
            {"kty": "OKP", "x": jwk(good)["x"]},
            {"crv": "Ed25519", "x": jwk(good)["x"]},
            "not an object",
            jwk(good),
        ]
    }

    keys = parse_jwks(json.dumps(document).encode())

    assert [k.public_bytes(Encoding.Raw, PublicFormat.Raw) for k in keys] == [
        good.public_bytes(Encoding.Raw, PublicFormat.Raw)
    ]


def test_parse_jwks_of_a_document_without_keys_is_empty() -> None:
    assert parse_jwks(b"{}") == []


# --- caching the JWKS -------------------------------------------------------------------------


def test_the_jwks_is_fetched_once_for_many_verifications() -> None:
    key = Ed25519PrivateKey.generate()
    fetch = CountingFetch(jwks(key))
    clock = FakeClock()
    verifier = WebhookVerifier(JwksKeys(JWKS_URL, fetch, clock=clock), clock=lambda: NOW)

    for n in range(50):
        clock.advance(60)
        assert verifier.verify(signed(key, BODY, request_id=f"r{n}"), BODY) == f"r{n}"

    assert fetch.count == 1


def test_no_fetch_happens_before_the_first_verification() -> None:
    fetch = CountingFetch(jwks(Ed25519PrivateKey.generate()))

    JwksKeys(JWKS_URL, fetch)

    assert fetch.count == 0


def test_the_jwks_is_fetched_again_once_it_is_older_than_max_age() -> None:
    fetch = CountingFetch(jwks(Ed25519PrivateKey.generate()))
    clock = FakeClock()
    keys = JwksKeys(JWKS_URL, fetch, max_age=3600, clock=clock)

    keys.current()
    clock.advance(3600)
    keys.current()
    assert fetch.count == 1

    clock.advance(1)
    keys.current()
    keys.current()
    assert fetch.count == 2


def test_default_max_age_is_at_most_a_day() -> None:
    fetch = CountingFetch(jwks(Ed25519PrivateKey.generate()))
    clock = FakeClock()
    keys = JwksKeys(JWKS_URL, fetch, clock=clock)

    keys.current()
    clock.advance(24 * 3600 + 1)
    keys.current()

    assert fetch.count == 2


def test_an_expired_set_is_replaced_by_the_new_one() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    clock = FakeClock()
    fetch = CountingFetch(jwks(old), jwks(new))
    verifier = WebhookVerifier(
        JwksKeys(JWKS_URL, fetch, max_age=3600, clock=clock), clock=lambda: NOW
    )

    verifier.verify(signed(old, BODY), BODY)
    clock.advance(3601)

    assert verifier.verify(signed(new, BODY, request_id="after"), BODY) == "after"
    assert fetch.count == 2


def test_refreshed_returns_none_within_the_refetch_interval() -> None:
    fetch = CountingFetch(jwks(Ed25519PrivateKey.generate()))
    clock = FakeClock()
    keys = JwksKeys(JWKS_URL, fetch, refetch_interval=300, clock=clock)
    keys.current()

    clock.advance(299)

    assert keys.refreshed() is None
    assert fetch.count == 1


def test_refreshed_fetches_again_after_the_refetch_interval() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    fetch = CountingFetch(jwks(old), jwks(new))
    clock = FakeClock()
    keys = JwksKeys(JWKS_URL, fetch, refetch_interval=300, clock=clock)
    keys.current()

    clock.advance(300)
    fresh = keys.refreshed()

    assert fresh is not None
    assert [k.public_bytes(Encoding.Raw, PublicFormat.Raw) for k in fresh] == [
        new.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ]
    assert fetch.count == 2
    assert keys.refreshed() is None  # and the interval starts over


def test_refreshed_fetches_when_nothing_was_fetched_yet() -> None:
    fetch = CountingFetch(jwks(Ed25519PrivateKey.generate()))
    keys = JwksKeys(JWKS_URL, fetch, clock=FakeClock())

    assert keys.refreshed() is not None
    assert fetch.count == 1


def test_a_flood_of_bad_signatures_refetches_at_most_once_per_interval() -> None:
    published, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    fetch = CountingFetch(jwks(published))
    clock = FakeClock()
    verifier = WebhookVerifier(
        JwksKeys(JWKS_URL, fetch, refetch_interval=300, clock=clock), clock=lambda: NOW
    )
    verifier.verify(signed(published, BODY), BODY)  # warms the cache
    assert fetch.count == 1

    for interval in range(3):
        for _ in range(100):
            clock.advance(1)
            with pytest.raises(WebhookRejected):
                verifier.verify(signed(forger, BODY), BODY)
        # 100 s into each 300 s window nothing more is fetched...
        assert fetch.count == 1 + interval
        clock.advance(200)  # ...and the next window may fetch once more.

    clock.advance(1)
    with pytest.raises(WebhookRejected):
        verifier.verify(signed(forger, BODY), BODY)
    assert fetch.count == 4


def test_a_key_rotation_is_picked_up_through_a_refresh() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    fetch = CountingFetch(jwks(old), jwks(new))
    clock = FakeClock()
    verifier = WebhookVerifier(
        JwksKeys(JWKS_URL, fetch, max_age=24 * 3600, refetch_interval=300, clock=clock),
        clock=lambda: NOW,
    )
    assert verifier.verify(signed(old, BODY, request_id="before"), BODY) == "before"

    clock.advance(301)  # well within max_age: only a failed check can trigger the new fetch
    assert verifier.verify(signed(new, BODY, request_id="after"), BODY) == "after"
    assert fetch.count == 2

    clock.advance(1)
    assert verifier.verify(signed(new, BODY, request_id="again"), BODY) == "again"
    assert fetch.count == 2


def test_a_rotated_key_used_within_the_refetch_interval_is_not_yet_trusted() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    fetch = CountingFetch(jwks(old), jwks(new))
    clock = FakeClock()
    verifier = WebhookVerifier(
        JwksKeys(JWKS_URL, fetch, refetch_interval=300, clock=clock), clock=lambda: NOW
    )
    verifier.verify(signed(old, BODY), BODY)

    clock.advance(10)
    with pytest.raises(WebhookRejected) as held_back:
        verifier.verify(signed(new, BODY), BODY)
    # A 5xx, not a 401: fal delivers it again, and a later delivery succeeds.
    assert (status_of(held_back.value.reason), held_back.value.reason) == (
        503,
        "signing_key_not_yet_known",
    )

    clock.advance(300)
    assert verifier.verify(signed(new, BODY, request_id="retry"), BODY) == "retry"


def test_a_forgery_gets_401_once_a_fresh_key_set_also_fails() -> None:
    published, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    fetch = CountingFetch(jwks(published))
    clock = FakeClock()
    verifier = WebhookVerifier(
        JwksKeys(JWKS_URL, fetch, refetch_interval=300, clock=clock), clock=lambda: NOW
    )
    verifier.verify(signed(published, BODY), BODY)

    clock.advance(10)
    with pytest.raises(WebhookRejected) as held_back:
        verifier.verify(signed(forger, BODY), BODY)
    assert status_of(held_back.value.reason) == 503  # cannot tell a forgery from a new key yet

    clock.advance(300)
    with pytest.raises(WebhookRejected) as refused:
        verifier.verify(signed(forger, BODY), BODY)
    assert (status_of(refused.value.reason), refused.value.reason) == (401, "bad_signature")
    assert fetch.count == 2


def test_a_signature_the_keys_fetched_for_it_do_not_verify_is_refused_at_once() -> None:
    published, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    fetch = CountingFetch(jwks(published))
    verifier = WebhookVerifier(JwksKeys(JWKS_URL, fetch, clock=FakeClock()), clock=lambda: NOW)

    with pytest.raises(WebhookRejected) as refused:
        verifier.verify(signed(forger, BODY), BODY)  # the very first fetch is fresh enough

    assert (status_of(refused.value.reason), refused.value.reason) == (401, "bad_signature")
    assert fetch.count == 1


def test_an_unknown_key_while_the_jwks_cannot_be_fetched_is_retried_later() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    documents = [jwks(old)]

    def fetch(url: str) -> bytes:
        if not documents:
            raise OSError("JWKS endpoint down")
        return documents.pop(0)

    clock = FakeClock()
    verifier = WebhookVerifier(
        JwksKeys(JWKS_URL, fetch, refetch_interval=300, clock=clock), clock=lambda: NOW
    )
    verifier.verify(signed(old, BODY), BODY)

    clock.advance(301)  # a refresh is allowed, but it fails
    with pytest.raises(WebhookRejected) as outage:
        verifier.verify(signed(new, BODY), BODY)

    assert status_of(outage.value.reason) == 503
