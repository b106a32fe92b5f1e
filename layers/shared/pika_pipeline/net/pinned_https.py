"""Outbound HTTPS to a URL someone else chose, pinned to the address that was checked.

Shared by the video download (fal's video URL) and the notifier (NotifyUrl, per-upload
callbacks). The URL is parsed once, here, and the connection is made with exactly the parts that
were checked: to the address that was checked (DNS is asked once), with TLS verified for the
checked host name. No second parser (urllib3's) ever reads the URL, so a URL that two parsers
read two ways (``https://127.0.0.1:8443\\@fal.media/``) cannot reach a host the check did not see.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from pika_pipeline.errors import HostUnresolvable, UrlNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[IPAddress]]
# A host name as DNS spells it: letters, digits, hyphens, dots. Anything else (an escape, a
# backslash, an "@") is a URL some parser reads differently: refused, never normalised.
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")


@dataclass(frozen=True)
class CheckedUrl:
    """The parts of a URL that passed the checks, before DNS: the only parts a request uses."""

    host: str  # a lowercase host name, or an IP literal (IPv6 without brackets)
    port: int
    target: str  # path and query, as sent in the request line
    literal: str | None  # the address, when the host is an IP literal the allowlist names


@dataclass(frozen=True)
class PinnedTarget:
    """A checked URL and the checked address the connection is made to."""

    host: str
    port: int
    target: str
    address: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"


def check_url(
    url: str, allowed_hosts: Sequence[str], *, what: str = "URL", setting: str = "the allowlist"
) -> CheckedUrl:
    """Only https, only allowlisted hosts (or their subdomains), only plainly spelled URLs.

    An IP literal passes only when the allowlist names it exactly (the local stack, on loopback,
    with its own port); a host name only on port 443. ``what`` and ``setting`` name the URL and
    the parameter in the refusal's message. Raises UrlNotAllowed. DNS is not asked: ``pin`` is.
    """
    allowed = tuple(host.lower() for host in allowed_hosts)
    if not url.isascii() or any(c == "\\" or c <= " " or c == "\x7f" for c in url):
        raise UrlNotAllowed(f"the {what} has a backslash, a space or a control byte")
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise UrlNotAllowed(f"the {what} is not https")
    if "@" in parts.netloc:
        raise UrlNotAllowed(f"the {what} carries userinfo")
    host = (parts.hostname or "").lower()
    try:
        explicit_port = parts.port
    except ValueError:
        raise UrlNotAllowed(f"the {what}'s port is not a port") from None
    port = explicit_port or 443
    bracketed = f"[{host}]" if ":" in host else host
    if parts.netloc.lower() != (f"{bracketed}:{explicit_port}" if explicit_port else bracketed):
        raise UrlNotAllowed(f"the {what}'s host is not plainly spelled")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not target.startswith("/"):
        raise UrlNotAllowed(f"the {what}'s path is not absolute")
    literal = _ip_literal(host)
    if literal is not None:
        if host not in allowed and f"{bracketed}:{port}" not in allowed:
            raise UrlNotAllowed(f"the address {host} is not in {setting}")
        return CheckedUrl(host=host, port=port, target=target, literal=str(literal))
    if not _HOST_NAME.fullmatch(host) or not any(
        host == name or host.endswith("." + name) for name in allowed
    ):
        raise UrlNotAllowed(f"the host {host!r} is not in {setting}")
    if port != 443:
        raise UrlNotAllowed(f"the {what} names port {port}; only 443 is fetched")
    return CheckedUrl(host=host, port=port, target=target, literal=None)


def pin(checked: CheckedUrl, resolve: Resolver | None = None) -> PinnedTarget:
    """The address to connect to: the listed literal, or the host's first address when every
    address DNS gives for it is global. Raises UrlNotAllowed or HostUnresolvable."""
    if checked.literal is not None:
        address = checked.literal
    else:
        addresses = list((resolve or resolve_host)(checked.host, checked.port))
        if not addresses:
            raise HostUnresolvable(f"the host {checked.host} has no address")
        for candidate in addresses:
            if not candidate.is_global:
                raise UrlNotAllowed(f"the host {checked.host} resolves to {candidate}")
        address = str(addresses[0])
    return PinnedTarget(
        host=checked.host, port=checked.port, target=checked.target, address=address
    )


def pinned_pool(
    target: PinnedTarget, *, timeout: urllib3.Timeout, ca_certs: str | None = None
) -> urllib3.HTTPSConnectionPool:
    """A connection pool bound to the checked address; TLS is verified for the host name
    (against the system's CAs, or SSL_CERT_FILE's, unless ``ca_certs`` names others).
    It never retries and never follows a redirect by itself."""
    return urllib3.HTTPSConnectionPool(
        target.address,
        target.port,
        timeout=timeout,
        retries=False,
        maxsize=1,
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_certs,
        server_hostname=target.host,
        assert_hostname=target.host,
    )


def resolve_host(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise HostUnresolvable(f"cannot resolve {host}: {exc}") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
