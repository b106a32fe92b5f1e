"""Per-attempt webhook URLs: the job id, the submit attempt, an expiry, and an HMAC token over all
three that only this stack can make.

The attempt lets the webhook recognise a result from a fal request whose id the submit never
learned (a timed-out or crashed call that fal had queued all the same), without accepting a
result for any other job. The expiry bounds how long a URL that leaked (fal shows it wherever it
shows the request) can be used at all: no genuine delivery comes after the job's deadline plus
fal's own delivery retries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlencode

# fal retries a failed delivery "10 times in the span of 2 hours" (docs.fal.ai webhooks).
FAL_DELIVERY_RETRY_SECONDS = 2 * 3600


def new_attempt() -> str:
    return secrets.token_hex(8)


def expiry_for(submitted_at: float, deadline_seconds: int) -> int:
    """When a URL stops being accepted: the job's deadline plus fal's delivery retries."""
    return int(submitted_at) + deadline_seconds + FAL_DELIVERY_RETRY_SECONDS


def token_for(job_id: str, attempt: str, expires_at: int, key: str) -> str:
    message = f"{job_id}\n{attempt}\n{expires_at}".encode()
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def token_matches(job_id: str, attempt: str, expires_at: int, token: str, key: str) -> bool:
    """Whether the token is this stack's for these values; the caller checks the expiry itself."""
    # Compared as bytes: compare_digest refuses non-ASCII str, and a forged token may be anything.
    return hmac.compare_digest(
        token_for(job_id, attempt, expires_at, key).encode("ascii"),
        token.encode("utf-8", "surrogatepass"),
    )


def webhook_url_for(base_url: str, job_id: str, attempt: str, key: str, *, expires_at: int) -> str:
    query = urlencode(
        {
            "job_id": job_id,
            "attempt": attempt,
            "expires": str(expires_at),
            "token": token_for(job_id, attempt, expires_at, key),
        }
    )
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}{query}"
