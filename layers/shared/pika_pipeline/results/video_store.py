"""Copies a finished video from fal's media host into the output bucket, streaming.

Memory stays bounded by the transfer manager's part size whatever the video's size: the body is
read in chunks straight from the HTTP response into a (multipart) upload, never into memory or
/tmp. Any failure aborts the upload, so no partial object is ever visible.
"""

from __future__ import annotations

import io
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import urlsplit

import urllib3
from boto3.s3.transfer import TransferConfig

from pika_pipeline.errors import RejectionReason, VideoUnavailable, WebhookRejected

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


@dataclass(frozen=True)
class StoredVideo:
    bucket: str
    key: str
    size: int


class VideoStore:
    def __init__(
        self,
        *,
        s3: S3Client,
        bucket: str,
        allowed_hosts: tuple[str, ...],
        max_bytes: int,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._allowed_hosts = allowed_hosts
        self._max_bytes = max_bytes
        self._http = http or urllib3.PoolManager(retries=False, timeout=TIMEOUT)

    def copy(
        self, url: str, *, key: str, expected_size: int | None, metadata: dict[str, str]
    ) -> StoredVideo:
        self.check_source(url)
        try:
            response = self._http.request(
                "GET", url, preload_content=False, redirect=False, retries=False, timeout=TIMEOUT
            )
        except urllib3.exceptions.HTTPError as exc:
            raise VideoUnavailable(f"could not fetch the video: {type(exc).__name__}") from None
        try:
            if response.status != 200:
                raise VideoUnavailable(f"the media host answered HTTP {response.status}")
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
            except VideoUnavailable:
                raise
            except Exception as exc:
                if isinstance(exc.__cause__, VideoUnavailable):
                    raise exc.__cause__ from None
                raise VideoUnavailable(f"could not store the video: {exc}") from exc
            return StoredVideo(bucket=self._bucket, key=key, size=stream.bytes_read)
        finally:
            response.release_conn()

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=key)

    def check_source(self, url: str) -> None:
        """Only https, only allowlisted hosts, never a private or link-local address."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not host:
            raise WebhookRejected(RejectionReason.VIDEO_URL_NOT_HTTPS)
        netloc_host = f"{host}:{parts.port}" if parts.port else host
        literal = _ip_literal(host)
        if literal is not None:
            # An address is only ever fetched when the operator listed it exactly (a local stack).
            if host not in self._allowed_hosts and netloc_host not in self._allowed_hosts:
                raise WebhookRejected(RejectionReason.VIDEO_HOST_NOT_ALLOWED)
            return
        if not any(
            host == allowed or host.endswith("." + allowed) for allowed in self._allowed_hosts
        ):
            raise WebhookRejected(RejectionReason.VIDEO_HOST_NOT_ALLOWED)
        for address in _resolve(host, parts.port or 443):
            if not address.is_global:
                raise WebhookRejected(RejectionReason.VIDEO_HOST_PRIVATE_ADDRESS)


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
            raise VideoUnavailable(f"the video is larger than {max_bytes} bytes")
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
                raise VideoUnavailable("the download is not an MP4 (no ftyp box)")
        self.bytes_read += len(chunk)
        if self.bytes_read > self._max_bytes:
            raise VideoUnavailable(f"the video is larger than {self._max_bytes} bytes")
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
            raise VideoUnavailable("the download is not an MP4 (too short)")
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


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise VideoUnavailable(f"cannot resolve the media host: {exc}") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]
