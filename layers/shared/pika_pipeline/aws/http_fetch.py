"""Small, bounded HTTPS GETs (the JWKS document) with urllib3: timeouts, no redirects."""

from __future__ import annotations

import urllib3

_HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=3.0, read=5.0))
MAX_DOCUMENT_BYTES = 64 * 1024


def fetch_bytes(url: str) -> bytes:
    response = _HTTP.request("GET", url, redirect=False, preload_content=False)
    try:
        if response.status != 200:
            raise OSError(f"GET {url} answered HTTP {response.status}")
        body = response.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise OSError(f"GET {url} returned more than {MAX_DOCUMENT_BYTES} bytes")
        return bytes(body)
    finally:
        response.release_conn()
