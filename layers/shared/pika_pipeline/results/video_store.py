"""Copies a finished video from fal's media host into the output bucket, streaming.

Memory stays bounded by the transfer manager's part size whatever the video's size: the body is
read in chunks straight from the HTTP response into a (multipart) upload, never into memory or
/tmp. Any failure aborts the upload, so no partial object is ever visible.

The URL is parsed once, here, and the connection is made with exactly the parts that were
checked: to the address that was checked (DNS is asked once), with TLS verified for the checked
host name. No second parser (urllib3's) ever reads the URL, so a URL that two parsers read two
ways (``https://127.0.0.1:8443\\@fal.media/``) cannot reach a host the check did not see.
"""

from __future__ import annotations

import io
import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import urlsplit

import urllib3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from pika_pipeline.errors import (
    VideoHostNotAllowed,
    VideoNotMp4,
    VideoRejected,
    VideoTooLarge,
    VideoUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

PART_BYTES = 8 * 1024 * 1024
TRANSFER = TransferConfig(
    multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=3
)
# s3transfer reads up to 10 parts of a non-seekable stream ahead of the uploads (80 MiB here).
# Three (queued or uploading, plus the one being read) bound the copy to about 48 MiB whatever the
# video's size, within the 64 MiB budget; two saved 10 MiB but left the download waiting for an
# upload to finish (10-15% slower in `make bench`). boto3's TransferConfig has no argument for
# it, only the attribute.
TRANSFER.max_in_memory_upload_chunks = 3
TIMEOUT = urllib3.Timeout(connect=5.0, read=30.0)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[IPAddress]]
# A host name as DNS spells it: letters, digits, hyphens, dots. Anything else (an escape, a
# backslash, an "@") is a URL some parser reads differently: refused, never normalised.
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
# S3 answers these with a 4xx although a later try can succeed (or an operator can fix them:
# a bucket policy, credentials): the video stays "unavailable", fal's retry or the reconciler
# tries again until the deadline. Every other 4xx refuses this video for good.
_S3_CODES_WORTH_RETRYING = frozenset(
    {
        "AccessDenied",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "NoSuchBucket",
        "NoSuchUpload",
        "RequestTimeTooSkewed",
        "RequestTimeout",
        "SignatureDoesNotMatch",
        "SlowDown",
        "TokenRefreshRequired",
    }
)


@dataclass(frozen=True)
class StoredVideo:
    bucket: str
    key: str
    size: int


@dataclass(frozen=True)
class VideoSource:
    """The checked parts of a video URL: the only parts the download uses."""

    host: str  # a lowercase host name, or an IP literal (IPv6 without brackets)
    port: int
    target: str  # path and query, as sent in the request line
    address: str  # the checked address the connection is made to

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"


def pinned_pool(source: VideoSource, *, ca_certs: str | None = None) -> urllib3.HTTPSConnectionPool:
    """A connection pool bound to the checked address; TLS is verified for the host name
    (against the system's CAs, or SSL_CERT_FILE's, unless ``ca_certs`` names others)."""
    return urllib3.HTTPSConnectionPool(
        source.address,
        source.port,
        timeout=TIMEOUT,
        retries=False,
        maxsize=1,
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_certs,
        server_hostname=source.host,
        assert_hostname=source.host,
    )


class VideoStore:
    def __init__(
        self,
        *,
        s3: S3Client,
        bucket: str,
        allowed_hosts: tuple[str, ...],
        max_bytes: int,
        resolve: Resolver | None = None,
        open_pool: Callable[[VideoSource], Any] = pinned_pool,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._allowed_hosts = tuple(host.lower() for host in allowed_hosts)
        self._max_bytes = max_bytes
        self._resolve = resolve or _resolve
        self._open_pool = open_pool
        # Warm invocations reuse the TLS connection to an address they already checked.
        self._pools: dict[VideoSource, Any] = {}

    def copy(
        self, url: str, *, key: str, expected_size: int | None, metadata: dict[str, str]
    ) -> StoredVideo:
        """Raises VideoRejected (never storable) or VideoUnavailable (try again later)."""
        source = self.check_source(url)
        try:
            response = self._pool(source).urlopen(
                "GET",
                source.target,
                # identity: a compressed body would be inflated before it is counted against
                # MaxVideoBytes (1 MiB of gzip on the wire can be 1 GiB stored).
                headers={"Host": source.host_header, "Accept-Encoding": "identity"},
                preload_content=False,
                decode_content=False,
                redirect=False,
                retries=False,
                timeout=TIMEOUT,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise VideoUnavailable(f"could not fetch the video: {type(exc).__name__}") from None
        try:
            if response.status != 200:
                raise VideoUnavailable(f"the media host answered HTTP {response.status}")
            encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
            if encoding != "identity":
                raise VideoNotMp4(f"the media host sent the video with Content-Encoding {encoding}")
            stream = CheckedVideoStream(
                response,
                max_bytes=self._max_bytes,
                expected_size=expected_size,
                announced_length=_content_length(response.headers),
            )
            try:
                self._s3.upload_fileobj(
                    # s3transfer needs only read() (its documented contract); the stub's IO[Any]
                    # is stricter than that and than typeshed's RawIOBase.
                    cast("BinaryIO", stream),
                    self._bucket,
                    key,
                    ExtraArgs={"ContentType": "video/mp4", "Metadata": metadata},
                    Config=TRANSFER,
                )
            except (VideoUnavailable, VideoRejected):
                raise
            except Exception as exc:
                if isinstance(exc.__cause__, VideoUnavailable | VideoRejected):
                    raise exc.__cause__ from None
                if _refused_for_good(exc):
                    raise VideoRejected(f"S3 refused the video: {exc}") from exc
                raise VideoUnavailable(f"could not store the video: {exc}") from exc
            return StoredVideo(bucket=self._bucket, key=key, size=stream.bytes_read)
        finally:
            response.release_conn()

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=key)

    def check_source(self, url: str) -> VideoSource:
        """Only https, only allowlisted hosts, never a private or link-local address.

        An IP literal is fetched only when the operator listed it exactly (the local stack, on
        loopback, with its own port); a host name only on port 443, and only when every address
        DNS gives for it is global. The connection then goes to the address checked here.
        """
        if not url.isascii() or any(c == "\\" or c <= " " or c == "\x7f" for c in url):
            raise VideoHostNotAllowed("the video URL has a backslash, a space or a control byte")
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise VideoHostNotAllowed("the video URL is not https")
        if "@" in parts.netloc:
            raise VideoHostNotAllowed("the video URL carries userinfo")
        host = (parts.hostname or "").lower()
        try:
            explicit_port = parts.port
        except ValueError:
            raise VideoHostNotAllowed("the video URL's port is not a port") from None
        port = explicit_port or 443
        bracketed = f"[{host}]" if ":" in host else host
        if parts.netloc.lower() != (f"{bracketed}:{explicit_port}" if explicit_port else bracketed):
            raise VideoHostNotAllowed("the video URL's host is not plainly spelled")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not target.startswith("/"):
            raise VideoHostNotAllowed("the video URL's path is not absolute")
        literal = _ip_literal(host)
        if literal is not None:
            if host not in self._allowed_hosts and f"{bracketed}:{port}" not in self._allowed_hosts:
                raise VideoHostNotAllowed(f"the address {host} is not in MediaHosts")
            return VideoSource(host=host, port=port, target=target, address=str(literal))
        if not _HOST_NAME.fullmatch(host) or not any(
            host == allowed or host.endswith("." + allowed) for allowed in self._allowed_hosts
        ):
            raise VideoHostNotAllowed(f"the host {host!r} is not in MediaHosts")
        if port != 443:
            raise VideoHostNotAllowed(f"the video URL names port {port}; only 443 is fetched")
        addresses = list(self._resolve(host, port))
        if not addresses:
            raise VideoUnavailable(f"the media host {host} has no address")
        for address in addresses:
            if not address.is_global:
                raise VideoHostNotAllowed(f"the media host {host} resolves to {address}")
        return VideoSource(host=host, port=port, target=target, address=str(addresses[0]))

    def _pool(self, source: VideoSource) -> Any:
        key = VideoSource(host=source.host, port=source.port, target="", address=source.address)
        pool = self._pools.get(key)
        if pool is None:
            if len(self._pools) >= 8:  # a handful of CDN addresses; never an unbounded cache
                self._pools.clear()
            pool = self._pools[key] = self._open_pool(source)
        return pool


class CheckedVideoStream(io.RawIOBase):
    """A read-only view of the download that checks what arrives while it streams."""

    def __init__(
        self,
        response: Any,
        *,
        max_bytes: int,
        expected_size: int | None,
        announced_length: int | None = None,
    ) -> None:
        super().__init__()
        self._response = response
        self._max_bytes = max_bytes
        self._expected_size = expected_size
        # The media host's Content-Length: checked here too, not left to the HTTP library (urllib3
        # 1.26, which an older runtime may bring, accepts a body that ends early).
        self._announced_length = announced_length
        if announced_length is not None and announced_length > max_bytes:
            raise VideoTooLarge(f"the video is larger than {max_bytes} bytes")
        self.bytes_read = 0
        self._head = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            chunk = self._response.read(PART_BYTES if size is None or size < 0 else size)
        except urllib3.exceptions.HTTPError as exc:
            raise VideoUnavailable(f"the download broke off: {type(exc).__name__}") from None
        if chunk and len(self._head) < 12:
            self._head += chunk[: 12 - len(self._head)]
            if len(self._head) >= 8 and self._head[4:8] != b"ftyp":
                raise VideoNotMp4("the download is not an MP4 (no ftyp box)")
        self.bytes_read += len(chunk)
        if self.bytes_read > self._max_bytes:
            raise VideoTooLarge(f"the video is larger than {self._max_bytes} bytes")
        if not chunk:
            self._check_complete()
        return bytes(chunk)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _check_complete(self) -> None:
        if self._announced_length is not None and self.bytes_read != self._announced_length:
            raise VideoUnavailable(
                f"the download broke off: {self.bytes_read} of {self._announced_length} bytes"
            )
        if self.bytes_read < 8:
            raise VideoNotMp4("the download is not an MP4 (too short)")
        if self._expected_size is not None and self.bytes_read != self._expected_size:
            raise VideoUnavailable(
                f"fal announced {self._expected_size} bytes but {self.bytes_read} arrived"
            )


def _content_length(headers: Any) -> int | None:
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _refused_for_good(exc: BaseException) -> bool:
    """Whether S3 answered the upload with a 4xx that no later try can change."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ClientError):
            status = seen.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = seen.response.get("Error", {}).get("Code", "")
            return 400 <= int(status) < 500 and code not in _S3_CODES_WORTH_RETRYING
        seen = seen.__cause__ or seen.__context__
    return False


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise VideoUnavailable(f"cannot resolve the media host: {exc}") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]
