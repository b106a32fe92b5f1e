"""Copies a finished video from fal's media host into the output bucket, streaming.

Memory stays bounded by the transfer manager's part size whatever the video's size: the body is
read in chunks straight from the HTTP response into a (multipart) upload, never into memory or
/tmp. Any failure aborts the upload, so no partial object is ever visible.

A video may be written only where nothing is yet (S3's ``If-None-Match: *``): a job writes its
readable key that way in the one call it always made, and learns only on a refusal (KeyTaken) that
an earlier upload's video is there. Server-side copies, conditional on the ETags read, then settle
which upload keeps that key (results/recorder.py).

The URL is parsed and checked once, and the connection pinned to the checked address, by
``net.pinned_https`` (which the notifier shares).
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import urllib3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from pika_pipeline.errors import (
    HostUnresolvable,
    UrlNotAllowed,
    VideoHostNotAllowed,
    VideoNotMp4,
    VideoRejected,
    VideoTooLarge,
    VideoUnavailable,
)
from pika_pipeline.net.pinned_https import (
    IPAddress as IPAddress,  # re-exported: the tests type their resolvers with it
)
from pika_pipeline.net.pinned_https import (
    PinnedTarget,
    Resolver,
    check_url,
    pin,
    resolve_host,
)
from pika_pipeline.net.pinned_https import pinned_pool as shared_pinned_pool

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
class StoredObject:
    """An object at a key, as a HEAD sees it: what a conditional write against it needs."""

    etag: str
    size: int
    metadata: Mapping[str, str]


class KeyTaken(Exception):
    """A write that wanted a free key found an object there: nothing was written."""


# CopyObject copies at most 5 GB in one call: a larger video stays where it was first written.
MAX_COPY_BYTES = 5 * 1000**3
# S3's answers to a conditional write whose condition failed (412), or that raced another
# conditional write of the same key (409).
_CONDITION_LOST = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
# The operations that finish an upload_fileobj: a single PUT, or the multipart completion.
_FINISHING_UPLOADS = ("PutObject", "CompleteMultipartUpload")


# The checked parts of a video URL (the only parts the download uses), and the checked address.
VideoSource = PinnedTarget


def pinned_pool(source: VideoSource, *, ca_certs: str | None = None) -> urllib3.HTTPSConnectionPool:
    """A connection pool bound to the checked address; TLS is verified for the host name
    (against the system's CAs, or SSL_CERT_FILE's, unless ``ca_certs`` names others)."""
    return shared_pinned_pool(source, timeout=TIMEOUT, ca_certs=ca_certs)


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
        self._resolve = resolve or resolve_host
        self._open_pool = open_pool
        # Warm invocations reuse the TLS connection to an address they already checked.
        self._pools: dict[VideoSource, Any] = {}
        # Keys being written only if free. s3transfer's upload takes no If-None-Match argument,
        # so the condition is added to the request that finishes the upload (which runs on the
        # transfer manager's threads: hence by key, not by a context variable).
        # Counted: records run on threads, and two may write one key.
        self._only_if_absent: Counter[str] = Counter()
        self._only_if_absent_lock = threading.Lock()
        self._conditions_added = False

    def _add_if_none_match(self, params: dict[str, Any], **_: Any) -> None:
        if params.get("Bucket") == self._bucket and params.get("Key") in self._only_if_absent:
            params["IfNoneMatch"] = "*"

    def copy(
        self,
        url: str,
        *,
        key: str,
        expected_size: int | None,
        metadata: dict[str, str],
        only_if_absent: bool = False,
    ) -> StoredVideo:
        """Raises VideoRejected (never storable) or VideoUnavailable (try again later); and,
        ``only_if_absent``, KeyTaken when an object is at ``key`` (nothing is then written)."""
        if not only_if_absent:
            return self._copy(url, key=key, expected_size=expected_size, metadata=metadata)
        with self._only_if_absent_lock:
            if not self._conditions_added:
                for operation in _FINISHING_UPLOADS:
                    self._s3.meta.events.register(
                        f"before-parameter-build.s3.{operation}",
                        self._add_if_none_match,
                        unique_id=f"pika-pipeline-if-none-match-{operation}-{id(self)}",
                    )
                self._conditions_added = True
            self._only_if_absent[key] += 1
        try:
            return self._copy(url, key=key, expected_size=expected_size, metadata=metadata)
        finally:
            with self._only_if_absent_lock:
                self._only_if_absent[key] -= 1
                if self._only_if_absent[key] <= 0:
                    del self._only_if_absent[key]

    def _copy(
        self, url: str, *, key: str, expected_size: int | None, metadata: dict[str, str]
    ) -> StoredVideo:
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
                if _s3_code(exc) in _CONDITION_LOST:
                    raise KeyTaken(key) from None
                if _refused_for_good(exc):
                    raise VideoRejected(f"S3 refused the video: {exc}") from exc
                raise VideoUnavailable(f"could not store the video: {exc}") from exc
            return StoredVideo(bucket=self._bucket, key=key, size=stream.bytes_read)
        finally:
            response.release_conn()

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=key)

    def head(self, key: str) -> StoredObject | None:
        """The object at ``key``, or None when there is none."""
        try:
            head = self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _s3_code(exc) in _NOT_FOUND:
                return None
            raise
        return StoredObject(
            etag=head["ETag"], size=head["ContentLength"], metadata=head.get("Metadata", {})
        )

    def copy_within(
        self,
        source_key: str,
        key: str,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        source_etag: str | None = None,
    ) -> bool:
        """Server-side copy of ``source_key`` (metadata included) to ``key``, only while ``key``
        holds the object whose ETag is ``if_match``, or (``if_none_match``) nothing; and, with
        ``source_etag``, only while the source is that object. False when a condition failed:
        someone else wrote meanwhile, and nothing was copied."""
        conditions: dict[str, str] = {}
        if if_match is not None:
            conditions["IfMatch"] = if_match
        if if_none_match:
            conditions["IfNoneMatch"] = "*"
        if source_etag is not None:
            conditions["CopySourceIfMatch"] = source_etag
        try:
            self._s3.copy_object(
                Bucket=self._bucket,
                Key=key,
                CopySource={"Bucket": self._bucket, "Key": source_key},
                MetadataDirective="COPY",
                **conditions,  # type: ignore[arg-type]
            )
        except ClientError as exc:
            if _s3_code(exc) in _CONDITION_LOST | _NOT_FOUND:
                return False
            raise
        return True

    def check_source(self, url: str) -> VideoSource:
        """Only https, only allowlisted hosts, never a private or link-local address.

        An IP literal is fetched only when the operator listed it exactly (the local stack, on
        loopback, with its own port); a host name only on port 443, and only when every address
        DNS gives for it is global. The connection then goes to the address checked here.
        """
        try:
            return pin(
                check_url(url, self._allowed_hosts, what="video URL", setting="MediaHosts"),
                self._resolve,
            )
        except UrlNotAllowed as exc:
            raise VideoHostNotAllowed(str(exc)) from None
        except HostUnresolvable as exc:
            raise VideoUnavailable(f"the media host: {exc}") from None

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


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code behind ``exc`` (s3transfer may wrap the ClientError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ClientError):
            return str(seen.response.get("Error", {}).get("Code", ""))
        seen = seen.__cause__ or seen.__context__
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
