"""Every upload ends in a final status, even when fal's webhook never comes."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.reconcile.reconciler import ReconcileOutcome
from tests.support.pipeline import Pipeline, eventbridge_body, without_outbox

UNFINISHED = ("IN_QUEUE", "IN_PROGRESS")


def _fal_finished(pipeline: Pipeline, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        requests = pipeline.fal_requests_for(job_id)
        if requests and all(r["status"] == "COMPLETED" for r in requests):
            return
        time.sleep(0.2)
    raise AssertionError(f"fal never finished job {job_id}")


def _aws_calls(pipeline: Pipeline, what: str = "calls") -> dict[str, int]:
    """How many calls of each service.operation the functions made (the AWS fault proxy counts),
    or with ``what="scans"`` how many Scans read each "table" or "table/index"."""
    url = f"{pipeline.info.aws_fault_proxy}/_faults/{what}"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the local proxy
        calls: dict[str, int] = json.loads(response.read())
        return calls


def _last_oldest_open_job_seconds(pipeline: Pipeline) -> float:
    """OldestOpenJobSeconds as the reconciler's last run wrote it (its EMF log line)."""
    log = Path(pipeline.info.state_dir, "logs", "ReconcilerFunction.log")
    for line in reversed(log.read_text().splitlines()):
        if line.startswith('{"_aws"') and "OldestOpenJobSeconds" in line:
            value = json.loads(line)["OldestOpenJobSeconds"]
            return float(value[-1] if isinstance(value, list) else value)
    raise AssertionError("the reconciler wrote no OldestOpenJobSeconds")


def _looked_at(pipeline: Pipeline, job_id: str, before: dict[str, Any]) -> bool:
    job = pipeline.job(job_id)
    return job is None or job.get("next_check_at") != before["next_check_at"]


def _created_ago(pipeline: Pipeline, job_id: str, seconds: int) -> None:
    """Dates a job's creation back, as if its upload came that long ago."""
    created = (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    pipeline.table.update_item(
        Key={"job_id": job_id},
        UpdateExpression="SET created_at = :created",
        ExpressionAttributeValues={":created": created},
    )


def test_a_lost_webhook_is_recovered_from_fals_result(pipeline: Pipeline) -> None:
    queue = pipeline.subscribe()
    pipeline.fal_faults(delivery=["drop"])
    job_id = pipeline.upload({"prompt": "the webhook never came", "duration": "1"})
    pipeline.wait_for_status(job_id, "SUBMITTED")
    _fal_finished(pipeline, job_id)

    job = pipeline.reconcile_until_final(job_id)

    assert job["status"] == "COMPLETED"
    head = pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])
    assert head["ContentLength"] == int(job["video_bytes"])
    assert len(pipeline.events_for(queue, job_id)) == 1
    assert "open_shard" not in job  # out of the reconciler's index


def test_a_lost_error_webhook_fails_the_job_with_fals_reason(pipeline: Pipeline) -> None:
    pipeline.fal_faults(delivery=["drop"], outcome=["validation_error"])
    job_id = pipeline.upload({"prompt": "refused, silently", "duration": "1"})
    pipeline.wait_for_status(job_id, "SUBMITTED")
    _fal_finished(pipeline, job_id)

    job = pipeline.reconcile_until_final(job_id)

    assert (job["status"], job["error_code"]) == ("FAILED", "fal_validation")
    assert "content checker" in job["error_message"]


def test_a_submit_that_crashed_after_claiming_is_submitted_again(pipeline: Pipeline) -> None:
    upload = pipeline.claimed_upload(
        "uploads/crashed-for-good.jpg",
        {"prompt": "never submitted", "duration": "1"},
        expires_in=-1,  # a submit that crashed
    )
    job_id = upload.job_id

    job = pipeline.reconcile_until_final(job_id)

    assert job["status"] == "COMPLETED"
    assert len(pipeline.fal_requests_for(job_id)) == 1


def test_a_crashed_submit_in_a_bucket_without_versioning_is_submitted_again(
    pipeline: Pipeline,
) -> None:
    upload = pipeline.claimed_upload(
        "uploads/crashed-unversioned.jpg",
        {"prompt": "an unversioned bucket", "duration": "1"},
        expires_in=-1,
        versioned=False,
    )

    job = pipeline.reconcile_until_final(upload.job_id)

    assert job["status"] == "COMPLETED"
    assert len(pipeline.fal_requests_for(upload.job_id)) == 1


def test_a_crashed_claim_outside_the_input_prefix_is_rejected_not_left_due(
    pipeline: Pipeline,
) -> None:
    # InputPrefix changed after the claim: the upload is no longer one the pipeline watches.
    queue = pipeline.subscribe()
    upload = pipeline.claimed_upload(
        "elsewhere/crashed.jpg", {"prompt": "the prefix moved", "duration": "1"}, expires_in=-1
    )

    job = pipeline.reconcile_until_final(upload.job_id)

    assert (job["status"], job["error_code"]) == ("REJECTED", "outside_input_prefix")
    assert "open_shard" not in job  # out of the reconciler's index
    assert pipeline.fal_submits_for(upload.job_id) == []
    (event,) = pipeline.events_for(queue, upload.job_id)
    assert event["detail-type"] == "Video Failed"


def test_a_request_stuck_at_fal_past_the_deadline_is_cancelled_and_expired(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(processing_seconds=30)
    job_id = pipeline.upload({"prompt": "stuck in fal's queue", "duration": "1"})
    pipeline.wait_for_status(job_id, "SUBMITTED")
    pipeline.fal_faults(processing_seconds=0)
    time.sleep(9)  # past the test stack's 8 s deadline

    job = pipeline.reconcile_until_final(job_id)

    assert (job["status"], job["error_code"]) == ("EXPIRED", "fal_deadline")
    (request,) = pipeline.fal_requests_for(job_id)
    assert request["cancelled"] is True


def test_the_reconciler_and_a_late_webhook_race_and_one_video_one_event_result(
    pipeline: Pipeline,
) -> None:
    queue = pipeline.subscribe()
    pipeline.fal_faults(delivery=["late"], late_seconds=3)
    job_id = pipeline.upload({"prompt": "late and reconciled", "duration": "1"})
    pipeline.wait_for_status(job_id, "SUBMITTED")
    _fal_finished(pipeline, job_id)

    job = pipeline.reconcile_until_final(job_id)
    (delivery,) = [pipeline.delivered(job_id)]

    assert job["status"] == "COMPLETED"
    assert delivery["status"] == 200  # the late webhook was acknowledged as a duplicate
    assert len(pipeline.events_for(queue, job_id, timeout=5)) == 1
    assert pipeline.video_objects(job_id) == [job["output_key"]]


def test_each_run_is_bounded_and_the_next_one_resumes(pipeline: Pipeline) -> None:
    pipeline.fal_faults(delivery=["drop"] * 4)
    job_ids = [pipeline.upload({"prompt": f"dropped {i}", "duration": "1"}) for i in range(4)]
    for job_id in job_ids:
        pipeline.wait_for_status(job_id, "SUBMITTED")
        _fal_finished(pipeline, job_id)

    reports = []
    for _ in range(10):
        reports.append(pipeline.reconcile())
        if all(pipeline.job(j)["status"] == "COMPLETED" for j in job_ids):  # type: ignore[index]
            break

    # ReconcileBatchSize bounds the jobs checked; the run's other work (dispatch, batch
    # summaries, events republished for earlier tests' jobs) is reported beside them.
    outcomes = {str(outcome) for outcome in ReconcileOutcome}
    checked = [sum(n for key, n in r.items() if key in outcomes) for r in reports]
    assert all(n <= 3 for n in checked)
    assert len(reports) >= 2
    assert [pipeline.job(j)["status"] for j in job_ids] == ["COMPLETED"] * 4  # type: ignore[index]


def test_a_redelivered_event_after_reconciliation_changes_nothing(pipeline: Pipeline) -> None:
    bucket = pipeline.own_bucket()
    key = "uploads/settled.jpg"
    version = pipeline.put_image(bucket, key, {"prompt": "settled", "duration": "1"})
    pipeline.fal_faults(delivery=["drop"])
    pipeline.send_raw_message(eventbridge_body(bucket, key, version))
    job_id = job_id_for(bucket=bucket, key=key, version=version)
    pipeline.wait_for_status(job_id, "SUBMITTED")
    _fal_finished(pipeline, job_id)
    settled = pipeline.reconcile_until_final(job_id)

    mark = pipeline.log_mark("SubmitFunction")
    pipeline.send_raw_message(eventbridge_body(bucket, key, version))
    pipeline.wait_for_duplicates(job_id, since=mark)

    assert pipeline.job_state(job_id) == without_outbox(settled)
    assert len(pipeline.fal_requests_for(job_id)) == 1


def test_two_reconciler_runs_at_once_settle_a_job_once(pipeline: Pipeline) -> None:
    queue = pipeline.subscribe()
    pipeline.fal_faults(delivery=["drop"])
    job_id = pipeline.upload({"prompt": "reconciled twice at once", "duration": "1"})
    pipeline.wait_for_status(job_id, "SUBMITTED")
    _fal_finished(pipeline, job_id)
    time.sleep(1.5)  # due for a check

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda _: pipeline.reconcile(), range(2)))
    job = pipeline.reconcile_until_final(job_id)

    assert job["status"] == "COMPLETED"
    assert len(pipeline.events_for(queue, job_id, timeout=5)) == 1
    assert pipeline.video_objects(job_id) == [job["output_key"]]


def test_a_stranded_claim_whose_image_was_deleted_ends_rejected(pipeline: Pipeline) -> None:
    upload = pipeline.claimed_upload(
        "uploads/deleted-after-claim.jpg",
        {"prompt": "gone", "duration": "1"},
        expires_in=-1,  # a submit that crashed
    )
    job_id = upload.job_id
    pipeline.s3.delete_object(Bucket=upload.bucket, Key=upload.key, VersionId=upload.version)

    job = pipeline.reconcile_until_final(job_id)

    assert (job["status"], job["error_code"]) == ("REJECTED", "object_not_found")
    assert "open_shard" not in job
    assert pipeline.fal_requests_for(job_id) == []


def test_the_reconciler_reads_its_index_and_never_scans_the_table(pipeline: Pipeline) -> None:
    pipeline.fal_faults(delivery=["drop"])
    job_id = pipeline.upload({"prompt": "found through the index", "duration": "1"})
    pipeline.wait_for_status(job_id, "SUBMITTED")
    _fal_finished(pipeline, job_id)
    before = _aws_calls(pipeline)

    job = pipeline.reconcile_until_final(job_id)

    after = _aws_calls(pipeline)
    assert job["status"] == "COMPLETED"
    assert after.get("dynamodb.Query", 0) > before.get("dynamodb.Query", 0)
    # Dispatch may read the sparse QueuedJobs index whole (it holds only waiting jobs); no
    # function ever scans a table.
    scanned = _aws_calls(pipeline, "scans")
    assert all("/" in target for target in scanned), scanned


def test_a_request_still_at_fal_before_the_deadline_is_left_alone(pipeline: Pipeline) -> None:
    pipeline.fal_faults(processing_seconds=6)  # well inside the test stack's 8 s deadline
    job_id = pipeline.upload({"prompt": "slow but on time", "duration": "1"})
    submitted = pipeline.wait_for_status(job_id, "SUBMITTED")
    pipeline.fal_faults(processing_seconds=0)
    time.sleep(1.2)  # due for a check (ReconcileAfterSeconds=1)

    # Earlier tests may leave other jobs due: run until this one has been looked at.
    for _ in range(5):
        pipeline.reconcile()
        if _looked_at(pipeline, job_id, submitted):
            break
    job = pipeline.job(job_id)
    assert job is not None
    (request,) = pipeline.fal_requests_for(job_id)

    assert request["status"] in UNFINISHED, "fal finished before the check; the test is too slow"
    assert job["status"] == "SUBMITTED"
    assert job["next_check_at"] > submitted["next_check_at"]  # looked at, to be asked again
    assert request["cancelled"] is False
    assert 0 < _last_oldest_open_job_seconds(pipeline) < 8
    # Left alone, it finishes the ordinary way: fal's webhook.
    assert pipeline.wait_for_job(job_id, timeout=30)["status"] == "COMPLETED"


def test_a_stranded_claim_fal_refuses_past_the_deadline_ends_failed_unavailable(
    pipeline: Pipeline,
) -> None:
    upload = pipeline.claimed_upload(
        "uploads/stranded-during-an-outage.jpg",
        {"prompt": "fal is down", "duration": "1"},
        expires_in=-1,  # a submit that crashed
    )
    job_id = upload.job_id
    _created_ago(pipeline, job_id, 9)  # past the test stack's 8 s deadline
    pipeline.fal_faults(rates={"submit": {"503": 1.0}})
    try:
        job = pipeline.reconcile_until_final(job_id)
    finally:
        pipeline.fal_faults(rates={})

    assert (job["status"], job["error_code"]) == ("FAILED", "fal_unavailable")
    assert "open_shard" not in job
    assert pipeline.fal_requests_for(job_id) == []


def test_a_video_on_a_host_not_allowed_ends_the_job_failed_through_the_reconciler_too(
    pipeline: Pipeline,
) -> None:
    # fal finished, its webhook was lost, and it serves the video from a host MediaHosts does
    # not allow: fetching it again can never help, so the reconciler ends the job at once.
    pipeline.fal_faults(delivery=["drop"], media=["foreign_host"])
    job_id = pipeline.upload({"prompt": "a video nobody may fetch", "duration": "1"})
    pipeline.wait_for_status(job_id, "SUBMITTED")
    _fal_finished(pipeline, job_id)

    job = pipeline.reconcile_until_final(job_id)

    assert (job["status"], job["error_code"]) == ("FAILED", "video_host_not_allowed")
    assert "open_shard" not in job


def test_a_video_that_cannot_be_stored_in_time_ends_the_job_failed_at_the_deadline(
    pipeline: Pipeline,
) -> None:
    # fal finished and its webhook was lost; S3 keeps failing (5xx) whenever the video is
    # stored. Each run tries again, until the deadline: then the job ends, it never stays open.
    pipeline.fal_faults(delivery=["drop"])
    job_id = pipeline.upload({"prompt": "S3 is down", "duration": "1"})
    submitted = pipeline.wait_for_status(job_id, "SUBMITTED")
    _fal_finished(pipeline, job_id)
    pipeline.aws_faults(service="s3", operation="PutObject", rate=1.0, status=500)
    try:
        pipeline.reconcile()
        assert pipeline.job(job_id)["status"] == "SUBMITTED"  # type: ignore[index]
        started = datetime.fromisoformat(submitted["submitted_at"]).timestamp()
        time.sleep(max(0.0, started + 8 - time.time()))  # the test stack's 8 s deadline

        job = pipeline.reconcile_until_final(job_id)
    finally:
        _reset_aws_faults(pipeline)

    assert (job["status"], job["error_code"]) == ("FAILED", "video_unavailable")
    assert "open_shard" not in job
    assert pipeline.video_objects(job_id) == []


def _reset_aws_faults(pipeline: Pipeline) -> None:
    request = urllib.request.Request(  # noqa: S310 - the local fault proxy
        f"{pipeline.info.aws_fault_proxy}/_faults/reset", data=b"", method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass
