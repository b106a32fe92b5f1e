"""One HTTP POST of a signed webhook to a receiver, through the shared SSRF guard.

https only, allowlisted hosts only, the connection pinned to the address checked (never a
private, loopback or link-local one unless the operator listed that exact address), short connect
and read timeouts, no redirects followed, nothing but the status read back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import urllib3

from pika_pipeline.errors import HostUnresolvable, UrlNotAllowed
from pika_pipeline.net.pinned_https import (
    PinnedTarget,
    Resolver,
    check_url,
    pin,
    pinned_pool,
    resolve_host,
)

USER_AGENT = "pika-pipeline-notifier"
# Receivers answer with a status; a large body is never read (nor kept in memory).
_MAX_ANSWER_BYTES = 1024


class Outcome(StrEnum):
    """What one attempt came to; the values are NotificationAttempts' ``outcome``."""

    DELIVERED = "delivered"  # 2xx
    GONE = "gone"  # 410: the receiver asks us to stop
    NOT_ALLOWED = "not_allowed"  # the URL fails the SSRF guard: no attempt is ever made
    HTTP_ERROR = "http_error"  # any other status (3xx included: redirects are not followed)
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # DNS, connection or TLS failure

    @property
    def final(self) -> bool:
        return self in (Outcome.DELIVERED, Outcome.GONE, Outcome.NOT_ALLOWED)


class WebhookSender:
    def __init__(
        self,
        *,
        allowed_hosts: Sequence[str],
        timeout: urllib3.Timeout,
        resolve: Resolver | None = None,
        open_pool: Callable[[PinnedTarget, urllib3.Timeout], Any] | None = None,
    ) -> None:
        self._allowed_hosts = tuple(allowed_hosts)
        self._timeout = timeout
        self._resolve = resolve or resolve_host
        self._open_pool = open_pool or (lambda target, t: pinned_pool(target, timeout=t))
        self._pools: dict[PinnedTarget, Any] = {}

    def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> tuple[Outcome, str]:
        """The outcome, and a short reason for the log (never the body or the headers)."""
        try:
            target = pin(check_url(url, self._allowed_hosts, what="webhook URL"), self._resolve)
        except UrlNotAllowed as exc:
            return Outcome.NOT_ALLOWED, str(exc)
        except HostUnresolvable as exc:
            return Outcome.UNREACHABLE, str(exc)
        try:
            response = self._pool(target).urlopen(
                "POST",
                target.target,
                body=body,
                headers={
                    **headers,
                    "Host": target.host_header,
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                },
                preload_content=False,
                redirect=False,
                retries=False,
                timeout=self._timeout,
            )
        except urllib3.exceptions.TimeoutError as exc:
            return Outcome.TIMEOUT, type(exc).__name__
        except urllib3.exceptions.HTTPError as exc:
            return Outcome.UNREACHABLE, type(exc).__name__
        try:
            response.read(_MAX_ANSWER_BYTES, decode_content=False)
        except urllib3.exceptions.TimeoutError:
            pass  # the status is what counts; a receiver that stalls its body still answered
        except urllib3.exceptions.HTTPError:
            pass
        finally:
            response.release_conn()
        status = int(response.status)
        if 200 <= status < 300:
            return Outcome.DELIVERED, f"HTTP {status}"
        if status == 410:
            return Outcome.GONE, "HTTP 410"
        return Outcome.HTTP_ERROR, f"HTTP {status}"

    def _pool(self, target: PinnedTarget) -> Any:
        key = PinnedTarget(host=target.host, port=target.port, target="", address=target.address)
        pool = self._pools.get(key)
        if pool is None:
            if len(self._pools) >= 8:  # a few receivers per function; never an unbounded cache
                self._pools.clear()
            pool = self._pools[key] = self._open_pool(target, self._timeout)
        return pool
