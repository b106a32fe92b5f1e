"""Signs webhook deliveries exactly as fal does, with the emulator's own Ed25519 key."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class WebhookSigner:
    def __init__(self, user_id: str, key: Ed25519PrivateKey | None = None) -> None:
        self.user_id = user_id
        self._key = key or Ed25519PrivateKey.generate()

    def jwks(self) -> dict[str, Any]:
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "emulator-1", "x": x}]}

    def headers(self, request_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = "\n".join((request_id, self.user_id, stamp, hashlib.sha256(body).hexdigest()))
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": self.user_id,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": self._key.sign(message.encode("utf-8")).hex(),
        }
