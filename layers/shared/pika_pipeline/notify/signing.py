"""Standard Webhooks v1 signatures: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``.

Signed with the standard library rather than the ``standardwebhooks`` package: it is a dozen
lines, and the tests verify with that package, which is then a receiver nobody here wrote rather
than the same code checking itself.

The secret (``NotifySigningSecret``) holds JSON: ``{"current": "whsec_..."}``, and during a
rotation also ``"previous"`` and ``"previous_expires_at"`` (ISO 8601): until then every delivery
carries both signatures, so receivers may switch keys at any moment of the window. A key may be
written with or without its ``whsec_`` prefix; the stack generates it without (CloudFormation
cannot prefix a generated value).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from pika_pipeline.errors import PipelineError

PREFIX = "whsec_"
MIN_KEY_BYTES = 24


class SigningSecretInvalid(PipelineError):
    """The signing secret is not what signing.py reads; the message never quotes it."""


@dataclass(frozen=True)
class SigningKeys:
    current: bytes
    previous: bytes | None = None
    previous_expires_at: datetime | None = None

    def active(self, now: datetime) -> list[bytes]:
        keys = [self.current]
        if self.previous and self.previous_expires_at and now < self.previous_expires_at:
            keys.append(self.previous)
        return keys


def signing_keys(secret_value: str) -> SigningKeys:
    text = secret_value.strip()
    if not text.startswith("{"):
        return SigningKeys(current=_key(text))
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise SigningSecretInvalid("the signing secret is not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("current"), str):
        raise SigningSecretInvalid('the signing secret has no "current" key')
    previous = document.get("previous")
    expires = document.get("previous_expires_at")
    if not previous:
        return SigningKeys(current=_key(document["current"]))
    if not isinstance(previous, str) or not isinstance(expires, str):
        raise SigningSecretInvalid('"previous" needs "previous_expires_at" (ISO 8601)')
    try:
        until = datetime.fromisoformat(expires.replace("Z", "+00:00"))
    except ValueError:
        raise SigningSecretInvalid('"previous_expires_at" is not an ISO 8601 time') from None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return SigningKeys(
        current=_key(document["current"]), previous=_key(previous), previous_expires_at=until
    )


def signature_header(keys: list[bytes], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


def _key(text: str) -> bytes:
    raw = text.strip().removeprefix(PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SigningSecretInvalid("a signing key is not base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise SigningSecretInvalid(f"a signing key is shorter than {MIN_KEY_BYTES} bytes")
    return key
