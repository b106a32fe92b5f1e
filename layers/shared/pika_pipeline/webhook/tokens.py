"""Per-attempt webhook URLs: the job id, the submit attempt, and an HMAC token over both that only
this stack can make.

The attempt lets the webhook recognise a result from a fal request whose id the submit never
learned (a timed-out or crashed call that fal had queued all the same), without accepting a
result for any other job.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlencode


def new_attempt() -> str:
    return secrets.token_hex(8)


def token_for(job_id: str, attempt: str, key: str) -> str:
    message = f"{job_id}\n{attempt}".encode()
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def token_matches(job_id: str, attempt: str, token: str, key: str) -> bool:
    # Compared as bytes: compare_digest refuses non-ASCII str, and a forged token may be anything.
    return hmac.compare_digest(
        token_for(job_id, attempt, key).encode("ascii"), token.encode("utf-8", "surrogatepass")
    )


def webhook_url_for(base_url: str, job_id: str, attempt: str, key: str) -> str:
    query = urlencode(
        {"job_id": job_id, "attempt": attempt, "token": token_for(job_id, attempt, key)}
    )
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}{query}"
