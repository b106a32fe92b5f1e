"""Exactly one paid job per upload, under crashes, concurrency and fal outages."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pika_pipeline.jobs import job_id_for
from tests.support.pipeline import Pipeline, eventbridge_body


def test_the_same_upload_twice_in_one_batch_is_submitted_once(pipeline: Pipeline) -> None:
    bucket = pipeline.own_bucket()
    key = "uploads/twice.jpg"
    version = pipeline.put_image(bucket, key, {"prompt": "twice", "duration": "1"})
    body = eventbridge_body(bucket, key, version)

    pipeline.send_batch([body, body])
    job = pipeline.wait_for_job(job_id_for(bucket=bucket, key=key, version=version))

    assert job["status"] == "COMPLETED"
    assert len(pipeline.fal_requests_for(job["job_id"])) == 1


def test_a_job_stranded_by_a_crash_between_claim_and_submit_is_submitted_on_redelivery(
    pipeline: Pipeline,
) -> None:
    bucket = pipeline.own_bucket()
    key = "uploads/crashed.jpg"
    version = pipeline.put_image(bucket, key, {"prompt": "after a crash", "duration": "1"})
    job_id = job_id_for(bucket=bucket, key=key, version=version)
    source = {"source_bucket": bucket, "source_key": key, "source_version": version}
    pipeline.leave_claim(job_id, source, expires_in=-1)  # a submit that crashed

    pipeline.send_raw_message(eventbridge_body(bucket, key, version))
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED"
    assert len(pipeline.fal_requests_for(job_id)) == 1


def test_a_live_claim_is_not_taken_over_by_a_duplicate(pipeline: Pipeline) -> None:
    bucket = pipeline.own_bucket()
    key = "uploads/in-flight.jpg"
    version = pipeline.put_image(bucket, key, {"prompt": "in flight", "duration": "1"})
    job_id = job_id_for(bucket=bucket, key=key, version=version)
    source = {"source_bucket": bucket, "source_key": key, "source_version": version}
    pipeline.leave_claim(job_id, source, expires_in=300)  # a submit still at work

    pipeline.send_raw_message(eventbridge_body(bucket, key, version))
    time.sleep(3)

    assert pipeline.fal_requests_for(job_id) == []
    job = pipeline.job(job_id)
    assert job is not None
    assert job["status"] == "PENDING"


def test_a_fal_outage_is_retried_and_the_attempt_is_recorded(pipeline: Pipeline) -> None:
    pipeline.fal_faults(submit=[500])

    job_id = pipeline.upload({"prompt": "after an outage", "duration": "1"})
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED"
    assert int(job["attempts"]) == 1
    assert "HTTP 500" in job["last_error"]
    assert len(pipeline.fal_requests_for(job_id)) == 1


def test_a_429_from_fal_is_retried_by_fal_client_itself_and_submits_once(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(submit=[429])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "rate limited", "duration": "1"}))

    assert job["status"] == "COMPLETED"
    assert "attempts" not in job  # absorbed inside one attempt: the message was not retried
    assert len(pipeline.fal_requests_for(job["job_id"])) == 1


def test_an_aws_failure_past_boto3s_retries_is_retried_soon_and_submits_once(
    pipeline: Pipeline,
) -> None:
    # boto3 tries a call 3 times; the ranged GET of the image fails all 3, once.
    pipeline.aws_faults(service="s3", operation="GetObject", times=3, status=500)

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "s3 hiccup", "duration": "1"}))

    assert job["status"] == "COMPLETED"
    assert len(pipeline.fal_requests_for(job["job_id"])) == 1
    log = Path(pipeline.info.state_dir, "logs", "SubmitFunction.log").read_text()
    retried = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and "Upload not processed" in line
    ]
    assert [entry["job_id"] for entry in retried] == [job["job_id"]]


def test_fal_down_for_every_attempt_fails_the_job_and_dead_letters_the_message(
    pipeline: Pipeline,
) -> None:
    marker = f"outage-{uuid.uuid4().hex[:8]}"
    pipeline.fal_faults(submit=[503] * 5)

    job_id = pipeline.upload({"prompt": "fal is down", "duration": "1"}, name=f"{marker}.jpg")
    job = pipeline.wait_for_job(job_id, timeout=90)

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_unavailable"
    assert int(job["attempts"]) == 5
    assert pipeline.fal_requests_for(job_id) == []
    assert marker in pipeline.wait_for_dead_letter(marker)


def test_a_refused_fal_key_fails_the_job_as_fal_auth(pipeline: Pipeline) -> None:
    pipeline.fal_faults(submit=[401])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "bad key", "duration": "1"}))

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_auth"


def test_a_batch_with_one_bad_upload_still_makes_the_other_nine_videos(
    pipeline: Pipeline,
) -> None:
    bucket = pipeline.own_bucket()
    uploads = []
    for index in range(10):
        key = f"uploads/batch/{index}.jpg"
        metadata = {"prompt": f"frame {index}", "duration": "1"} if index else {}  # 0: no prompt
        uploads.append((key, pipeline.put_image(bucket, key, metadata)))
    job_ids = [job_id_for(bucket=bucket, key=key, version=version) for key, version in uploads]

    pipeline.send_batch([eventbridge_body(bucket, key, version) for key, version in uploads])
    jobs = [pipeline.wait_for_job(job_id) for job_id in job_ids]

    assert jobs[0]["error_code"] == "missing_prompt"
    assert [job["status"] for job in jobs[1:]] == ["COMPLETED"] * 9


def test_fal_clients_retry_after_a_timeout_is_counted_and_both_results_are_recognised(
    pipeline: Pipeline,
) -> None:
    """fal queued the first POST but answered after the client's timeout, so fal_client POSTed
    again: two paid requests exist. The job keeps both ids and stores one video, and the second
    result is acknowledged as a duplicate, neither refused nor stored twice."""
    pipeline.fal_faults(submit_delay=[3])  # longer than the 2 s attempt timeout

    job_id = pipeline.upload({"prompt": "ambiguous", "duration": "1"})
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED"
    requests = _eventually(lambda: _all_delivered(pipeline, job_id, expected=2))
    assert {r["request_id"] for r in requests} == _eventually(
        lambda: _request_ids_if(pipeline, job_id, count=2)
    )
    assert [r["deliveries"][0]["status"] for r in requests] == [200, 200]
    stored = pipeline.s3.list_objects_v2(Bucket=pipeline.output_bucket, Prefix=f"videos/{job_id}")
    assert stored["KeyCount"] == 1


def test_a_late_error_from_a_second_request_never_regresses_a_completed_job(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(submit_delay=[3], outcome=["ok", "error"])

    job_id = pipeline.upload({"prompt": "late error", "duration": "1"})
    _eventually(lambda: _all_delivered(pipeline, job_id, expected=2))
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED"
    assert "error_code" not in job
    assert pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])


def _eventually[T](probe: Callable[[], T | None], timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def _all_delivered(pipeline: Pipeline, job_id: str, expected: int) -> list[dict[str, Any]] | None:
    requests = pipeline.fal_requests_for(job_id)
    if len(requests) == expected and all(r["deliveries"] for r in requests):
        return requests
    return None


def _request_ids_if(pipeline: Pipeline, job_id: str, count: int) -> set[str] | None:
    job = pipeline.job(job_id) or {}
    ids = set(job.get("request_ids", ()))
    return ids if len(ids) == count else None
