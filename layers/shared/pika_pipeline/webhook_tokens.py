"""Per-job webhook URLs: the job id plus an HMAC token only this stack can make."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode


def token_for(job_id: str, key: str) -> str:
    return hmac.new(key.encode("utf-8"), job_id.encode("utf-8"), hashlib.sha256).hexdigest()


def token_matches(job_id: str, token: str, key: str) -> bool:
    # Compared as bytes: compare_digest refuses non-ASCII str, and a forged token may be anything.
    return hmac.compare_digest(
        token_for(job_id, key).encode("ascii"), token.encode("utf-8", "surrogatepass")
    )


def webhook_url_for(base_url: str, job_id: str, key: str) -> str:
    query = urlencode({"job_id": job_id, "token": token_for(job_id, key)})
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}{query}"
