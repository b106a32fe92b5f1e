"""fal's webhook signature: Ed25519 over request id, user id, timestamp and the body's SHA-256.

Fails closed: any missing header, malformed value or unknown key rejects the request. A
signature no cached key verifies, while a fresh key set cannot be fetched yet (rate limit, JWKS
outage), is answered 503 rather than 401: it may be signed with a newly rotated key, and fal
delivers a 5xx again later. Only a set fetched for (or just before) that delivery turns it into 401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from enum import Enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pika_pipeline.errors import RejectionReason, SigningKeysUnavailable, WebhookRejected
from pika_pipeline.observability import logger

REQUEST_ID = "x-fal-webhook-request-id"
USER_ID = "x-fal-webhook-user-id"
TIMESTAMP = "x-fal-webhook-timestamp"
SIGNATURE = "x-fal-webhook-signature"

FetchJson = Callable[[str], bytes]


def parse_jwks(document: bytes) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS; ``x`` is base64url without padding, so pad it first.

    Only keys that say they are OKP/Ed25519 count: a key without ``kty``/``crv`` is not guessed at.
    """
    keys = []
    for jwk in json.loads(document).get("keys", []):
        if not isinstance(jwk, dict) or (jwk.get("kty"), jwk.get("crv")) != ("OKP", "Ed25519"):
            continue
        x = str(jwk.get("x", ""))
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError):
            continue
    return keys


class KeyCheck(Enum):
    VERIFIED = "verified"
    FAILED = "failed"  # even a set fetched just now does not verify it: a forgery
    UNDECIDED = "undecided"  # the cached set does not, and a fresh one cannot be fetched yet


class JwksKeys:
    """fal's public keys, cached for at most ``max_age`` seconds (fal says no more than 24 h).

    When a signature fails against the cached keys the set is fetched again, but at most once per
    ``refetch_interval``, so a flood of forged requests cannot hammer the JWKS endpoint.
    """

    def __init__(
        self,
        url: str,
        fetch: FetchJson,
        *,
        max_age: float = 24 * 3600,
        refetch_interval: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._fetch = fetch
        self._max_age = max_age
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._keys: list[Ed25519PublicKey] = []
        self._loaded_at: float | None = None  # when the current keys were fetched
        self._attempted_at: float | None = None  # the last fetch, successful or not
        self._lock = threading.Lock()

    def current(self) -> list[Ed25519PublicKey]:
        return self._current()[0]

    def _current(self) -> tuple[list[Ed25519PublicKey], bool]:
        """The cached keys, and whether they were fetched by this very call."""
        with self._lock:
            now = self._clock()
            if self._loaded_at is not None and now - self._loaded_at <= self._max_age:
                return self._keys, False
            if self._recently_attempted(now):
                raise SigningKeysUnavailable("fal's signing keys could not be fetched recently")
            self._load(now)
            return self._keys, True

    def check(self, verifies: Callable[[list[Ed25519PublicKey]], bool]) -> KeyCheck:
        """Whether some key verifies; UNDECIDED when none does but a fresher set is held back."""
        keys, fetched_now = self._current()
        if verifies(keys):
            return KeyCheck.VERIFIED
        if fetched_now:  # the freshest set there is already failed
            return KeyCheck.FAILED
        fresh = self.refreshed()
        if fresh is None:
            return KeyCheck.UNDECIDED
        return KeyCheck.VERIFIED if verifies(fresh) else KeyCheck.FAILED

    def refreshed(self) -> list[Ed25519PublicKey] | None:
        """Fresh keys after a failed check; None if a fetch was tried too recently or failed."""
        with self._lock:
            now = self._clock()
            if self._recently_attempted(now):
                return None
            try:
                self._load(now)
            except SigningKeysUnavailable:
                return None
            return self._keys

    def _recently_attempted(self, now: float) -> bool:
        return self._attempted_at is not None and now - self._attempted_at < self._refetch_interval

    def _load(self, now: float) -> None:
        # Every attempt counts, failed ones too, so a JWKS outage is not hammered by requests.
        self._attempted_at = now
        try:
            keys = parse_jwks(self._fetch(self._url))
        except Exception as exc:
            raise SigningKeysUnavailable(f"cannot load fal's signing keys: {exc}") from None
        self._keys, self._loaded_at = keys, now


class WebhookVerifier:
    def __init__(
        self,
        keys: JwksKeys,
        *,
        expected_user_id: str = "",
        tolerance_seconds: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._expected_user_id = expected_user_id
        self._tolerance = tolerance_seconds
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Checks a delivery; returns fal's request id from the signed headers."""
        values = {name: headers.get(name, "") for name in (REQUEST_ID, USER_ID, TIMESTAMP)}
        signature_hex = headers.get(SIGNATURE, "")
        missing = [name for name, value in values.items() if not value]
        if missing or not signature_hex:
            raise WebhookRejected(RejectionReason.MISSING_SIGNATURE_HEADER)
        try:
            timestamp = int(values[TIMESTAMP])
        except ValueError:
            raise WebhookRejected(RejectionReason.MALFORMED_TIMESTAMP) from None
        if abs(self._clock() - timestamp) > self._tolerance:
            raise WebhookRejected(RejectionReason.STALE_TIMESTAMP)
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise WebhookRejected(RejectionReason.MALFORMED_SIGNATURE) from None
        if len(signature) != 64:
            raise WebhookRejected(RejectionReason.MALFORMED_SIGNATURE)
        message = "\n".join(
            (
                values[REQUEST_ID],
                values[USER_ID],
                values[TIMESTAMP],
                hashlib.sha256(body).hexdigest(),
            )
        ).encode("utf-8")
        verdict = self._keys.check(lambda keys: _any_verifies(keys, signature, message))
        if verdict is KeyCheck.VERIFIED:
            if self._expected_user_id and values[USER_ID] != self._expected_user_id:
                # Checked after the signature, so the id logged is one fal really signed for:
                # the operator can tell a wrong FalUserId from another account's request.
                logger.warning(
                    "Delivery signed by fal for another user",
                    extra={
                        "signed_user_id": values[USER_ID],
                        "signed_request_id": values[REQUEST_ID],
                    },
                )
                raise WebhookRejected(RejectionReason.WRONG_USER_ID)
            return values[REQUEST_ID]
        if verdict is KeyCheck.UNDECIDED:
            # Perhaps a rotated key we cannot fetch yet: 503 makes fal deliver it again later.
            raise WebhookRejected(RejectionReason.SIGNING_KEY_NOT_YET_KNOWN)
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE)


def _any_verifies(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False
