"""When fal cannot make the video, the job says so with fal's own reason."""

from __future__ import annotations

import time

from tests.support.pipeline import Pipeline


def test_a_content_policy_error_from_fal_fails_the_job_with_fals_message(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(outcome=["validation_error"])

    job_id = pipeline.upload({"prompt": "something fal will refuse", "duration": "1"})
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_validation"
    assert "flagged by the content checker" in job["error_message"]
    assert "output_key" not in job


def test_an_internal_error_at_fal_fails_the_job_with_fals_message(pipeline: Pipeline) -> None:
    pipeline.fal_faults(outcome=["error"])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "waves", "duration": "1"}))

    assert (job["status"], job["error_code"]) == ("FAILED", "fal_error")
    assert job["error_message"] == "Internal server error"


def test_an_unserializable_payload_from_fal_fails_the_job(pipeline: Pipeline) -> None:
    pipeline.fal_faults(outcome=["payload_error"])

    job_id = pipeline.upload({"prompt": "waves", "duration": "1"})
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_payload_error"


def test_fal_refusing_the_input_at_submit_fails_the_job_without_retrying(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(submit=[422])

    job_id = pipeline.upload({"prompt": "waves", "duration": "1"})
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_validation"
    assert "request_id" not in job


def test_a_duplicate_webhook_delivery_stores_one_video(pipeline: Pipeline) -> None:
    pipeline.fal_faults(delivery=["duplicate"])

    job_id = pipeline.upload({"prompt": "waves", "duration": "1"})
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED"
    deliveries: list[dict[str, object]] = []
    for _ in range(40):  # the second delivery may still be on its way
        (request,) = pipeline.fal_requests_for(job_id)
        deliveries = request["deliveries"]
        if len(deliveries) == 2:
            break
        time.sleep(0.25)
    assert [d["status"] for d in deliveries] == [200, 200]
    stored = pipeline.s3.list_objects_v2(Bucket=pipeline.output_bucket, Prefix=f"videos/{job_id}")
    assert [o["Key"] for o in stored["Contents"]] == [job["output_key"]]
