"""The video object's metadata always fits S3's 2 KB, whatever the upload's key."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from pika_pipeline.results.recorder import METADATA_LIMIT_BYTES, video_metadata

JOB_ID = "0" * 64
REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"


def _size(metadata: dict[str, str]) -> int:
    # S3 counts the UTF-8 bytes of each name and value.
    return sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())


@pytest.mark.parametrize(
    "key",
    [
        "uploads/" + "é" * 505 + ".jpg",  # 1,022 bytes: a legal key that quotes to 3,042
        "uploads/" + "%" * 1000 + ".png",
        "uploads/" + "😀" * 250 + ".png",
    ],
)
def test_a_long_key_is_cut_at_a_whole_character_and_marked(key: str) -> None:
    metadata = video_metadata(job_id=JOB_ID, request_id=REQUEST_ID, source_key=key)

    assert _size(metadata) <= METADATA_LIMIT_BYTES
    assert metadata["source-key-truncated"] == "true"
    assert key.startswith(unquote(metadata["source-key"]))
    assert metadata["job-id"] == JOB_ID


def test_a_usual_key_is_kept_whole() -> None:
    metadata = video_metadata(
        job_id=JOB_ID, request_id=REQUEST_ID, source_key="uploads/été/photo 1.jpg"
    )

    assert unquote(metadata["source-key"]) == "uploads/été/photo 1.jpg"
    assert "source-key-truncated" not in metadata
    assert metadata["fal-request-id"] == REQUEST_ID


def test_the_video_links_back_to_its_upload_version_and_correlation_id() -> None:
    metadata = video_metadata(
        job_id=JOB_ID,
        request_id=REQUEST_ID,
        source_key="uploads/shop/sku 123.png",
        source_version="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
        correlation_id="réf SKU-123 ✓",
    )

    assert all(value.isascii() for value in metadata.values())  # S3 metadata must be ASCII
    assert unquote(metadata["source-version"]) == "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
    assert unquote(metadata["correlation-id"]) == "réf SKU-123 ✓"
    assert "correlation-id-truncated" not in metadata


def test_the_longest_key_and_correlation_id_together_still_fit() -> None:
    metadata = video_metadata(
        job_id=JOB_ID,
        request_id=REQUEST_ID,
        source_key="uploads/" + "😀" * 250 + ".png",
        source_version="v" * 1024,
        correlation_id="😀" * 256,  # the most a correlation id may be: 256 characters
    )

    assert _size(metadata) <= METADATA_LIMIT_BYTES
    assert metadata["correlation-id-truncated"] == "true"
    assert ("😀" * 256).startswith(unquote(metadata["correlation-id"]))
