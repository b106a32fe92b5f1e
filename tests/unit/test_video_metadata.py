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
