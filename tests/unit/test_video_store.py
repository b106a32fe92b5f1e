"""Where the webhook may fetch a video from: fal's hosts over https, never a private address."""

from __future__ import annotations

import gzip
import io
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pytest

from pika_pipeline.errors import VideoHostNotAllowed, VideoNotMp4, VideoTooLarge, VideoUnavailable
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.results.video_store import (
    CheckedVideoStream,
    IPAddress,
    VideoSource,
    VideoStore,
    pinned_pool,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MP4 = b"\x00\x00\x00\x18ftypisom" + bytes(100)


PUBLIC = ipaddress.ip_address("93.184.216.34")  # stands in for a CDN's public address


def _public(host: str, port: int) -> list[IPAddress]:
    return [PUBLIC]


def _store(*hosts: str, resolve: Any = _public, open_pool: Any = None) -> VideoStore:
    return VideoStore(
        # check_source never calls S3: a store without a client proves it (any call would raise).
        s3=cast("S3Client", None),
        bucket="videos",
        allowed_hosts=hosts,
        max_bytes=1024,
        resolve=resolve,
        **({"open_pool": open_pool} if open_pool else {}),
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://v3.fal.media/files/a.mp4",
        "ftp://v3.fal.media/files/a.mp4",
        "https://evil.example/a.mp4",
        "https://v3.fal.media.evil.example/a.mp4",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/a.mp4",
        # The two URLs the review proved: urlsplit saw fal.media, urllib3 connected elsewhere.
        "https://127.0.0.1:8443\\@fal.media/x.mp4",
        "https://evil.example\\@fal.media/x.mp4",
        "https://evil.example@fal.media/x.mp4",  # userinfo, even without a second reading
        "https://user:pass@fal.media/x.mp4",
        "https://fal.media:8443/x.mp4",  # a named host on any port but 443
        "https://fal.media:0443x/x.mp4",
        "https://fal.media/x.mp4\\..\\y",
        "https://fal.media/a b.mp4",
        "https://fal.media/\x00.mp4",
        "https://fal%2emedia/x.mp4",
        "https://FAL.media./x.mp4",
    ],
)
def test_urls_outside_the_allowlist_are_refused(url: str) -> None:
    with pytest.raises(VideoHostNotAllowed):
        _store("fal.media", "127.0.0.1").check_source(url)


def test_a_host_missing_from_media_hosts_ends_the_job_with_its_own_code() -> None:
    with pytest.raises(VideoHostNotAllowed) as refused:
        _store("fal.media").check_source("https://evil.example/a.mp4")

    assert refused.value.code == ErrorCode.VIDEO_HOST_NOT_ALLOWED


def test_an_allowlisted_name_that_resolves_to_a_private_address_is_refused() -> None:
    with pytest.raises(VideoHostNotAllowed, match=r"resolves to 127\.0\.0\.1"):
        _store("localhost", resolve=lambda h, p: [ipaddress.ip_address("127.0.0.1")]).check_source(
            "https://localhost/files/a.mp4"
        )


def test_an_address_is_fetched_only_when_listed_exactly() -> None:
    source = _store("127.0.0.1").check_source("https://127.0.0.1:8443/files/a.mp4?x=1")

    assert (source.address, source.port, source.target) == ("127.0.0.1", 8443, "/files/a.mp4?x=1")
    with pytest.raises(VideoHostNotAllowed):
        _store("127.0.0.2").check_source("https://127.0.0.1:8443/files/a.mp4")


@dataclass
class FakeResponse:
    body: bytes
    headers: dict[str, str]
    status: int = 200

    def __post_init__(self) -> None:
        self._stream = io.BytesIO(self.body)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def release_conn(self) -> None:
        pass


@dataclass
class RecordingPool:
    """Where the store connected, and what it asked; answers with ``response``."""

    response: FakeResponse
    opened: list[VideoSource] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def open(self, source: VideoSource) -> RecordingPool:
        self.opened.append(source)
        return self

    def urlopen(self, method: str, target: str, **kwargs: Any) -> FakeResponse:
        self.requests.append({"method": method, "target": target, **kwargs})
        return self.response


class FakeS3:
    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}

    def upload_fileobj(self, stream: Any, bucket: str, key: str, **kwargs: Any) -> None:
        self.stored[key] = b"".join(iter(lambda: stream.read(16), b""))


def test_a_dns_answer_that_changes_after_the_check_cannot_move_the_connection() -> None:
    answers = iter([[PUBLIC], [ipaddress.ip_address("169.254.169.254")]])
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[IPAddress]:
        asked.append(host)
        return next(answers)

    pool = RecordingPool(FakeResponse(MP4, {"Content-Length": str(len(MP4))}))
    store = _store("fal.media", resolve=rebinding, open_pool=pool.open)
    s3 = FakeS3()
    store._s3 = cast("S3Client", s3)

    store.copy("https://v3.fal.media/files/a.mp4", key="k", expected_size=None, metadata={})

    assert asked == ["v3.fal.media"]  # DNS is asked once, for the check
    (source,) = pool.opened
    assert (source.address, source.host, source.port) == (str(PUBLIC), "v3.fal.media", 443)
    (request,) = pool.requests
    assert request["target"] == "/files/a.mp4"
    assert request["headers"]["Host"] == "v3.fal.media"
    assert s3.stored == {"k": MP4}


def test_tls_is_verified_for_the_checked_name_on_a_pool_bound_to_the_checked_address() -> None:
    source = _store("fal.media").check_source("https://v3.fal.media/files/a.mp4")

    pool = pinned_pool(source)

    assert (pool.host, pool.port) == (str(PUBLIC), 443)
    assert pool.assert_hostname == "v3.fal.media"
    assert pool.conn_kw["server_hostname"] == "v3.fal.media"
    assert pool.cert_reqs == "CERT_REQUIRED"


def test_a_compressed_response_is_refused_before_anything_is_stored() -> None:
    gzipped = gzip.compress(MP4 + bytes(100_000))  # inflates far past max_bytes
    pool = RecordingPool(FakeResponse(gzipped, {"Content-Encoding": "gzip"}))
    store = _store("fal.media", open_pool=pool.open)
    s3 = FakeS3()
    store._s3 = cast("S3Client", s3)

    with pytest.raises(VideoNotMp4, match="Content-Encoding gzip"):
        store.copy("https://v3.fal.media/a.mp4", key="k", expected_size=None, metadata={})

    (request,) = pool.requests
    assert request["headers"]["Accept-Encoding"] == "identity"
    assert request["decode_content"] is False
    assert s3.stored == {}


def _read_all(stream: CheckedVideoStream) -> bytes:
    chunks = []
    while chunk := stream.read(16):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_whole_mp4_streams_through_and_is_counted() -> None:
    stream = CheckedVideoStream(
        io.BytesIO(MP4), max_bytes=1024, expected_size=len(MP4), announced_length=len(MP4)
    )

    assert _read_all(stream) == MP4
    assert stream.bytes_read == len(MP4)


@pytest.mark.parametrize(
    ("body", "expected_size", "announced_length", "error", "reason"),
    [
        # the connection ended early
        (MP4[:60], None, len(MP4), VideoUnavailable, "broke off: 60 of 112"),
        # fal's file_size
        (MP4, len(MP4) + 1, None, VideoUnavailable, "announced 113 bytes but 112 arrived"),
        # never storable, however often it is fetched: the job ends FAILED
        (b"<html>502 Bad Gateway</html>", None, None, VideoNotMp4, r"no ftyp box"),
        (MP4[:6], None, None, VideoNotMp4, r"not an MP4 \(too short\)"),
        (MP4 + bytes(2000), None, None, VideoTooLarge, "larger than 1024 bytes"),
    ],
    ids=["truncated", "wrong-file-size", "not-mp4", "too-short", "over-the-limit"],
)
def test_a_download_that_is_not_the_whole_video_fails_while_it_streams(
    body: bytes,
    expected_size: int | None,
    announced_length: int | None,
    error: type[Exception],
    reason: str,
) -> None:
    stream = CheckedVideoStream(
        io.BytesIO(body),
        max_bytes=1024,
        expected_size=expected_size,
        announced_length=announced_length,
    )

    with pytest.raises(error, match=reason):
        _read_all(stream)


def test_a_video_announced_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(VideoTooLarge, match="larger than 1024 bytes"):
        CheckedVideoStream(
            io.BytesIO(b""), max_bytes=1024, expected_size=None, announced_length=4096
        )
