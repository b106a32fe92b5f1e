"""Every upload becomes exactly one paid fal job: duplicates never submit twice."""

from __future__ import annotations

import json
import time

from tests.support.pipeline import Pipeline


def _eventbridge_body(bucket: str, key: str, version_id: str) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "3e6b4d1a-redelivery",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2026-11-25T12:00:00Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {"key": key, "size": 100171, "version-id": version_id},
                "reason": "PutObject",
            },
        }
    )


def test_a_redelivered_upload_event_does_not_submit_again(pipeline: Pipeline) -> None:
    job_id = pipeline.upload({"prompt": "a lighthouse at dusk", "duration": "1"})
    first = pipeline.wait_for_job(job_id)
    assert first["status"] == "COMPLETED"

    # S3 and EventBridge deliver at least once: the same object version arrives again.
    body = _eventbridge_body(first["source_bucket"], first["source_key"], first["source_version"])
    pipeline.send_raw_message(body)
    pipeline.send_raw_message(body)
    time.sleep(3)

    assert len(pipeline.fal_requests_for(job_id)) == 1
    after = pipeline.job(job_id)
    assert after is not None
    assert after["status"] == "COMPLETED"
    assert after["request_ids"] == first["request_ids"]


def test_a_new_upload_of_the_same_key_is_a_new_job(pipeline: Pipeline) -> None:
    key = "uploads/same-key/photo.jpg"
    first = pipeline.upload({"prompt": "first take", "duration": "1"}, key=key)
    second = pipeline.upload({"prompt": "second take", "duration": "1"}, key=key)

    assert first != second
    jobs = [pipeline.wait_for_job(first), pipeline.wait_for_job(second)]

    assert [job["status"] for job in jobs] == ["COMPLETED", "COMPLETED"]
    assert [job["prompt"] for job in jobs] == ["first take", "second take"]
    assert jobs[0]["output_key"] != jobs[1]["output_key"]
