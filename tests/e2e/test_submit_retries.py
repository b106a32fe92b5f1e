"""Exactly one paid job per upload, under crashes, concurrency and fal outages.

A fal outage at dispatch releases the job's claim in its slot and makes it due for the
reconciler, whose next run submits it again (here run on demand: `resubmitted_after_outage`);
past the deadline its last try ends the job FAILED `fal_unavailable`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pika_pipeline.jobs.identity import job_id_for
from tests.support.pipeline import Pipeline, eventbridge_body, eventually


def test_the_same_upload_twice_in_one_batch_is_submitted_once(pipeline: Pipeline) -> None:
    bucket = pipeline.own_bucket()
    key = "uploads/twice.jpg"
    version = pipeline.put_image(bucket, key, {"prompt": "twice", "duration": "1"})
    body = eventbridge_body(bucket, key, version)

    pipeline.send_batch([body, body])
    job = pipeline.wait_for_job(job_id_for(bucket=bucket, key=key, version=version))

    assert job["status"] == "COMPLETED"
    assert len(pipeline.fal_requests_for(job["job_id"])) == 1


def test_a_job_stranded_by_a_crash_between_claim_and_submit_is_submitted_by_the_reconciler(
    pipeline: Pipeline,
) -> None:
    upload = pipeline.claimed_upload(
        "uploads/crashed.jpg",
        {"prompt": "after a crash", "duration": "1"},
        expires_in=-1,  # a dispatch that crashed
    )
    job_id = upload.job_id

    # A redelivered event does not submit it (the job exists); the reconciler takes it over.
    mark = pipeline.log_mark("SubmitFunction")
    pipeline.send_raw_message(eventbridge_body(upload.bucket, upload.key, upload.version))
    pipeline.wait_for_duplicates(job_id, since=mark)
    assert pipeline.fal_requests_for(job_id) == []
    pipeline.reconcile()
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED"
    assert len(pipeline.fal_requests_for(job_id)) == 1


def test_a_live_claim_is_not_taken_over_by_a_duplicate(pipeline: Pipeline) -> None:
    upload = pipeline.claimed_upload(
        "uploads/in-flight.jpg",
        {"prompt": "in flight", "duration": "1"},
        expires_in=300,  # a submit still at work
    )
    job_id = upload.job_id

    mark = pipeline.log_mark("SubmitFunction")
    pipeline.send_raw_message(eventbridge_body(upload.bucket, upload.key, upload.version))
    pipeline.wait_for_duplicates(job_id, since=mark)

    assert pipeline.fal_requests_for(job_id) == []
    job = pipeline.job(job_id)
    assert job is not None
    assert job["status"] == "PENDING"


def test_a_fal_outage_is_retried_and_the_attempt_is_recorded(pipeline: Pipeline) -> None:
    pipeline.fal_faults(submit=[500])

    job_id = pipeline.upload({"prompt": "after an outage", "duration": "1"})
    resubmitted_after_outage(pipeline, job_id)
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
    retried = [
        entry
        for entry in pipeline.log_entries("SubmitFunction")
        if "Upload not processed" in entry["message"]
    ]
    assert [entry["job_id"] for entry in retried] == [job["job_id"]]


def test_a_429_outlasting_fal_clients_own_retries_is_retried_by_the_reconciler_and_counted(
    pipeline: Pipeline,
) -> None:
    # fal_client tries a submit 10 times (about a minute of backoff): every one is refused.
    pipeline.fal_faults(submit=[429] * 10)

    job_id = pipeline.upload({"prompt": "rate limited for long", "duration": "1"})
    resubmitted_after_outage(pipeline, job_id, timeout=150)
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED"
    assert int(job["attempts"]) == 1
    assert "HTTP 429" in job["last_error"]
    assert [r["status"] for r in pipeline.refused_fal_submits_for(job_id)] == [429] * 10
    assert len(pipeline.fal_requests_for(job_id)) == 1


def test_fal_down_until_the_deadline_fails_the_job_fal_unavailable_and_pays_nothing(
    pipeline: Pipeline,
) -> None:
    marker = f"outage-{uuid.uuid4().hex[:8]}"
    pipeline.fal_faults(submit=[503] * 40)

    job_id = pipeline.upload({"prompt": "fal is down", "duration": "1"}, name=f"{marker}.jpg")
    resubmitted_after_outage(pipeline, job_id)
    job = pipeline.reconcile_until_final(job_id, runs=30)

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_unavailable"
    assert int(job["attempts"]) >= 2  # the dispatch, then the reconciler's tries
    assert pipeline.fal_requests_for(job_id) == []
    # The upload event was handled (the job waited in the jobs table, not in SQS).
    assert not pipeline.dead_lettered(marker)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_fal_key_fails_the_job_as_fal_auth_and_pages(
    pipeline: Pipeline, status: int
) -> None:
    def fal_auth_errors() -> float:
        return pipeline.metric_total("SubmitFunction", "FalErrors", error_type="fal_auth")

    def fal_auth_failures() -> float:
        return pipeline.metric_total("SubmitFunction", "VideosFailed", error_code="fal_auth")

    paged, failed = fal_auth_errors(), fal_auth_failures()
    pipeline.fal_faults(submit=[status])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "bad key", "duration": "1"}))

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_auth"
    assert f"HTTP {status}" in job["error_message"]
    assert "attempts" not in job  # not retried: a refused key stays refused
    # FalAuthAlarm watches the first; FailedVideosAlarm counts it with fal's own failures.
    eventually(lambda: fal_auth_errors() > paged or None)
    eventually(lambda: fal_auth_failures() > failed or None)


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
    assert [len(pipeline.fal_requests_for(job_id)) for job_id in job_ids] == [0] + [1] * 9


@pytest.fixture
def late_results(pipeline: Pipeline) -> Iterator[None]:
    """Results marked "late" arrive 12 s after fal finishes: after a retried submit."""
    pipeline.fal_faults(late_seconds=12)
    yield
    pipeline.fal_faults(late_seconds=5)


@pytest.mark.usefixtures("late_results")
def test_a_call_whose_answer_is_lost_is_not_posted_again_and_its_late_result_is_booked(
    pipeline: Pipeline,
) -> None:
    """fal queued the first request but answered after the 2 s timeout, and its (failed) result
    comes late. fal_client must not POST that call again (a second paid request nobody would
    know of): the call fails; fal's history does not list the request yet, so the reconciler
    submits again, and that call completes the job.
    The late result is fal's and for this job: it is acknowledged (a refusal would make fal
    retry it for hours), booked on the job, and changes nothing."""
    # fal's history does not list the first request yet, so the reconciler cannot adopt it.
    pipeline.fal_faults(
        submit_delay=[3], delivery=["late"], outcome=["error", "ok"], history=["hidden"]
    )

    job_id = pipeline.upload({"prompt": "lost answer", "duration": "1"})
    resubmitted_after_outage(pipeline, job_id)
    first, second = eventually(lambda: _all_delivered(pipeline, job_id, expected=2), 40)
    job = eventually(lambda: _job_with_request_ids(pipeline, job_id, count=2))

    attempts = {parse_qs(urlsplit(r["webhook_url"]).query)["attempt"][0] for r in (first, second)}
    assert len(attempts) == 2  # one POST per attempt
    assert {first["start_timeout"], second["start_timeout"]} == {"8.0"}  # the job deadline
    assert job["status"] == "COMPLETED"
    assert job["completed_request_id"] == second["request_id"]
    assert "error_code" not in job
    assert [d["status"] for d in first["deliveries"]] == [200]
    assert "open_attempts" not in job
    assert pipeline.video_objects(job_id) == [job["output_key"]]


@pytest.mark.usefixtures("late_results")
def test_the_result_of_a_lost_answer_completes_a_job_whose_known_request_never_delivers(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(submit_delay=[3], delivery=["late", "drop"], history=["hidden"])

    job_id = pipeline.upload({"prompt": "only the lost one delivers", "duration": "1"})
    resubmitted_after_outage(pipeline, job_id)
    job = pipeline.wait_for_job(job_id, timeout=40)

    first, second = pipeline.fal_requests_for(job_id)
    assert job["status"] == "COMPLETED"
    assert job["completed_request_id"] == first["request_id"]
    assert set(job["request_ids"]) == {first["request_id"], second["request_id"]}
    assert pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])


@pytest.mark.usefixtures("late_results")
def test_a_job_the_submit_path_failed_is_completed_by_a_result_fal_made_after_all(
    pipeline: Pipeline,
) -> None:
    # The first call's answer is lost; the retry is refused (401) and fails the job. fal had
    # queued the first request all the same: its video is the user's, not a loss.
    pipeline.fal_faults(submit=[None, 401], submit_delay=[3], delivery=["late"], history=["hidden"])

    job_id = pipeline.upload({"prompt": "failed, then delivered", "duration": "1"})
    resubmitted_after_outage(pipeline, job_id)
    failed = pipeline.wait_for_job(job_id)
    assert (failed["status"], failed["error_code"]) == ("FAILED", "fal_auth")
    job = pipeline.wait_for_status(job_id, "COMPLETED", timeout=40)

    (request,) = pipeline.fal_requests_for(job_id)
    assert job["completed_request_id"] == request["request_id"]
    assert "error_code" not in job
    assert "error_message" not in job
    assert pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])


def _all_delivered(
    pipeline: Pipeline, job_id: str, expected: int | None = None
) -> list[dict[str, Any]] | None:
    """The job's fal requests once each has been delivered with a 2xx answer."""
    requests = pipeline.fal_requests_for(job_id)
    if expected is not None and len(requests) != expected:
        return None
    if requests and all(
        any(200 <= d["status"] < 300 for d in r["deliveries"] if isinstance(d["status"], int))
        for r in requests
    ):
        return requests
    return None


def _job_with_request_ids(pipeline: Pipeline, job_id: str, count: int) -> dict[str, Any] | None:
    job = pipeline.job(job_id) or {}
    return job if len(job.get("request_ids", ())) == count else None


def resubmitted_after_outage(pipeline: Pipeline, job_id: str, timeout: float = 30) -> None:
    """Once the dispatch met fal's outage (the claim released, the job due at once), the
    reconciler's next run: it submits the job again (a deployment runs it every few minutes)."""

    def released() -> bool | None:
        job = pipeline.job(job_id) or {}
        return (job.get("status") == "PENDING" and int(job.get("claim_expires_at", 1)) == 0) or None

    eventually(released, timeout)
    pipeline.reconcile()
