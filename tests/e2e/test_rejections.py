"""A bad upload ends in a specific, recorded rejection, and fal is never paid for it."""

from __future__ import annotations

import pytest

from pika_pipeline.jobs.identity import job_id_for
from tests.support.pipeline import Pipeline, eventbridge_body, without_outbox


@pytest.mark.parametrize(
    ("metadata", "body", "error_code"),
    [
        ({}, None, "missing_prompt"),
        ({"prompt": "   "}, None, "missing_prompt"),
        ({"prompt": "x" * 1501}, None, "prompt_too_long"),
        ({"prompt": "waves", "resolution": "4k"}, None, "invalid_resolution"),
        ({"prompt": "waves", "duration": "five"}, None, "invalid_duration"),
        ({"prompt": "waves", "duration": "60"}, None, "invalid_duration"),
        ({"prompt": "waves", "seed": "-1"}, None, "invalid_seed"),
        ({"prompt": "waves"}, b"this is a text file, not an image", "unsupported_image_type"),
        ({"prompt": "waves"}, b"", "empty_object"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_bad_upload_is_rejected_with_its_reason(
    pipeline: Pipeline, metadata: dict[str, str], body: bytes | None, error_code: str
) -> None:
    job_id = pipeline.upload(metadata, body=body, name="photo.png")

    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "REJECTED"
    assert job["error_code"] == error_code
    assert job["error_message"]
    assert pipeline.fal_submits_for(job_id) == []


def test_an_image_named_png_is_checked_by_its_bytes_not_its_name(pipeline: Pipeline) -> None:
    jpeg_named_png = pipeline.upload({"prompt": "waves", "duration": "1"}, name="photo.png")
    fake = pipeline.upload({"prompt": "waves"}, body=b"GIF89a" + bytes(100), name="anim.png")

    assert pipeline.wait_for_job(jpeg_named_png)["status"] == "COMPLETED"
    assert pipeline.wait_for_job(fake)["error_code"] == "unsupported_image_type"


def test_an_image_above_the_size_limit_is_rejected_before_paying(pipeline: Pipeline) -> None:
    too_big = b"\x89PNG\r\n\x1a\n" + bytes(20 * 1024 * 1024)

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "waves"}, body=too_big))

    assert (job["status"], job["error_code"]) == ("REJECTED", "image_too_large")
    assert pipeline.fal_requests_for(job["job_id"]) == []


def test_an_object_deleted_before_it_was_read_is_rejected(pipeline: Pipeline) -> None:
    bucket = pipeline.own_bucket()
    key = "uploads/gone.jpg"
    version = pipeline.put_image(bucket, key, {"prompt": "gone"})
    pipeline.s3.delete_object(Bucket=bucket, Key=key, VersionId=version)

    pipeline.send_raw_message(eventbridge_body(bucket, key, version))
    job = pipeline.wait_for_job(job_id_for(bucket=bucket, key=key, version=version))

    assert (job["status"], job["error_code"]) == ("REJECTED", "object_not_found")


def test_a_rejected_upload_is_not_retried(pipeline: Pipeline) -> None:
    job_id = pipeline.upload({"duration": "1"}, name="no-prompt.png")
    rejected = pipeline.wait_for_job(job_id)
    pipeline.wait_for_queue_drained()  # its message was deleted: it cannot come back

    assert pipeline.job_state(job_id) == without_outbox(rejected)
    assert rejected["error_code"] == "missing_prompt"
    assert pipeline.fal_submits_for(job_id) == []
    # Processed once: no retry was scheduled, and the message did not reach the DLQ.
    assert pipeline.submit_log_messages_for(job_id) == ["Upload rejected"]
    assert not pipeline.dead_lettered(rejected["source_key"])
