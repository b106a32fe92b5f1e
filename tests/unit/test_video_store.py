"""Where the webhook may fetch a video from: fal's hosts over https, never a private address."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, cast

import pytest

from pika_pipeline.errors import VideoUnavailable, WebhookRejected
from pika_pipeline.results.video_store import CheckedVideoStream, VideoStore

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MP4 = b"\x00\x00\x00\x18ftypisom" + bytes(100)


def _store(*hosts: str) -> VideoStore:
    # check_source never calls S3: a store without a client proves it (any call would raise).
    return VideoStore(
        s3=cast("S3Client", None), bucket="videos", allowed_hosts=hosts, max_bytes=1024
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://v3.fal.media/files/a.mp4", "video_url_not_https"),
        ("ftp://v3.fal.media/files/a.mp4", "video_url_not_https"),
        ("https://evil.example/a.mp4", "video_host_not_allowed"),
        ("https://v3.fal.media.evil.example/a.mp4", "video_host_not_allowed"),
        ("https://169.254.169.254/latest/meta-data/", "video_host_not_allowed"),
        ("https://[::1]/a.mp4", "video_host_not_allowed"),
    ],
)
def test_urls_outside_the_allowlist_are_refused(url: str, reason: str) -> None:
    with pytest.raises(WebhookRejected) as refused:
        _store("fal.media").check_source(url)

    assert refused.value.reason == reason


def test_an_allowlisted_name_that_resolves_to_a_private_address_is_refused() -> None:
    with pytest.raises(WebhookRejected) as refused:
        _store("localhost").check_source("https://localhost/files/a.mp4")

    assert refused.value.reason == "video_host_private_address"


def test_an_address_is_fetched_only_when_listed_exactly() -> None:
    _store("127.0.0.1").check_source("https://127.0.0.1:8443/files/a.mp4")

    with pytest.raises(WebhookRejected):
        _store("127.0.0.2").check_source("https://127.0.0.1:8443/files/a.mp4")


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
    ("body", "expected_size", "announced_length", "reason"),
    [
        (MP4[:60], None, len(MP4), "broke off: 60 of 112"),  # the connection ended early
        (MP4, len(MP4) + 1, None, "announced 113 bytes but 112 arrived"),  # fal's file_size
        (b"<html>502 Bad Gateway</html>", None, None, r"not an MP4 \(no ftyp box\)"),
        (MP4[:6], None, None, r"not an MP4 \(too short\)"),
        (MP4 + bytes(2000), None, None, "larger than 1024 bytes"),  # no length announced
    ],
    ids=["truncated", "wrong-file-size", "not-mp4", "too-short", "over-the-limit"],
)
def test_a_download_that_is_not_the_whole_video_fails_while_it_streams(
    body: bytes, expected_size: int | None, announced_length: int | None, reason: str
) -> None:
    stream = CheckedVideoStream(
        io.BytesIO(body),
        max_bytes=1024,
        expected_size=expected_size,
        announced_length=announced_length,
    )

    with pytest.raises(VideoUnavailable, match=reason):
        _read_all(stream)


def test_a_video_announced_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(VideoUnavailable, match="larger than 1024 bytes"):
        CheckedVideoStream(
            io.BytesIO(b""), max_bytes=1024, expected_size=None, announced_length=4096
        )
