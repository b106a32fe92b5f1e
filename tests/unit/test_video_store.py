"""Where the webhook may fetch a video from: fal's hosts over https, never a private address."""

from __future__ import annotations

import pytest

from pika_pipeline.errors import WebhookRejected
from pika_pipeline.video_store import VideoStore


def _store(*hosts: str) -> VideoStore:
    return VideoStore(s3=None, bucket="videos", allowed_hosts=hosts, max_bytes=1024)


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
