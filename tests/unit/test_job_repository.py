"""The jobs table's conditions: who may queue or take over a job, which status may follow which,
and what a lost or throttled write raises. Against moto in-process, with the template's
JobsTable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from pika_pipeline.aws.errors import error_code
from pika_pipeline.errors import JobConflict, JobStoreBusy
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.open_jobs import OpenJobs, open_shard
from pika_pipeline.jobs.repository import JobRepository
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES, JobStatus, can_transition
from tests.unit.moto_tables import offline_aws, template_table

JOB_ID = "0123456789abcdef0123456789abcdef"
TABLE = "jobs"
NOW = int(time.time())
CLAIM_SECONDS = 900
RECONCILE_AFTER_SECONDS = 600


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    offline_aws(monkeypatch)


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        yield template_table(boto3.resource("dynamodb"), "JobsTable", TABLE)


@pytest.fixture
def jobs(table: Any) -> JobRepository:
    return JobRepository(lambda: table, retention_days=30)


def enqueue(jobs: JobRepository, *, order: str = "000000000001#t0#" + JOB_ID) -> None:
    jobs.enqueue(
        {"job_id": JOB_ID, "source_bucket": "in", "source_key": "uploads/cat.png"},
        lane="normal",
        order=order,
        queued_at="2026-12-04T10:00:00.000+00:00",
    )


def reclaim(jobs: JobRepository, attempt: str = "a2", *, now: int = NOW) -> None:
    jobs.reclaim(
        JOB_ID,
        attempt=attempt,
        now_epoch=now,
        claim_seconds=CLAIM_SECONDS,
        reconcile_after_seconds=RECONCILE_AFTER_SECONDS,
    )


def stored(table: Any) -> dict[str, Any]:
    item: dict[str, Any] = table.get_item(Key={"job_id": JOB_ID}, ConsistentRead=True)["Item"]
    return item


def job_in(table: Any, status: JobStatus, **attributes: Any) -> None:
    """A job some earlier writes left in ``status``: a waiting one in the queue's index, one at
    fal (PENDING, SUBMITTED) in the reconciler's."""
    item = {"job_id": JOB_ID, "status": str(status), **attributes}
    if status is JobStatus.QUEUED:
        item |= {"queue_lane": "normal", "queue_order": "000000000001#t0#" + JOB_ID}
    elif status not in TERMINAL_STATUSES:
        item |= {"open_shard": open_shard(JOB_ID), "next_check_at": NOW}
    table.put_item(Item=item)


def dispatched(table: Any, attempt: str = "a1", *, claim_expires_at: int, **more: Any) -> None:
    """A job the slot transaction claimed (dispatch/slots.py writes these fields)."""
    job_in(
        table,
        JobStatus.PENDING,
        claim_expires_at=claim_expires_at,
        open_attempts={attempt},
        slot=0,
        created_at="2026-12-04T10:00:00.000+00:00",
        **more,
    )


def test_an_upload_waits_queued_outside_the_reconcilers_index(
    jobs: JobRepository, table: Any
) -> None:
    enqueue(jobs)

    item = stored(table)
    assert item["status"] == "QUEUED"
    assert item["source_key"] == "uploads/cat.png"
    assert item["queue_lane"] == "normal"
    assert item["queue_order"] == "000000000001#t0#" + JOB_ID
    assert item["queued_at"] == "2026-12-04T10:00:00.000+00:00"
    assert item["created_at"]
    # Nothing runs out while it waits: no claim, no reconciler check, no retention clock.
    for absent in ("claim_expires_at", "open_shard", "next_check_at", "expires_at"):
        assert absent not in item
    assert OpenJobs(lambda: table).due(now_epoch=NOW + 10**8, limit=10) == []


def test_a_duplicate_event_for_a_queued_job_does_nothing(jobs: JobRepository, table: Any) -> None:
    enqueue(jobs)

    with pytest.raises(JobConflict):
        enqueue(jobs, order="000000000009#t1#" + JOB_ID)

    assert stored(table)["queue_order"] == "000000000001#t0#" + JOB_ID


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.SUBMITTED])
def test_a_job_at_fal_is_not_queued_again(
    jobs: JobRepository, table: Any, status: JobStatus
) -> None:
    job_in(table, status, claim_expires_at=NOW - 1)

    with pytest.raises(JobConflict):
        enqueue(jobs)

    assert stored(table)["status"] == status


def test_a_job_failed_as_fal_unavailable_waits_for_a_slot_again(
    jobs: JobRepository, table: Any
) -> None:
    job_in(
        table,
        JobStatus.FAILED,
        error_code=ErrorCode.FAL_UNAVAILABLE,
        error_message="down",
        claim_expires_at=NOW,
        slot=1,
        created_at="2026-12-01T00:00:00.000+00:00",
    )

    enqueue(jobs)

    item = stored(table)
    assert item["status"] == "QUEUED"
    assert item["created_at"] == "2026-12-01T00:00:00.000+00:00"  # it keeps its history
    for absent in ("error_code", "error_message", "claim_expires_at", "slot"):
        assert absent not in item


def test_a_job_failed_as_fal_unavailable_that_reached_fal_is_not_queued_again(
    jobs: JobRepository, table: Any
) -> None:
    job_in(table, JobStatus.FAILED, error_code=ErrorCode.FAL_UNAVAILABLE, request_id="req-1")

    with pytest.raises(JobConflict):
        enqueue(jobs)


@pytest.mark.parametrize("code", [ErrorCode.FAL_VALIDATION, ErrorCode.FAL_ERROR])
def test_a_job_failed_otherwise_is_not_queued_again(
    jobs: JobRepository, table: Any, code: ErrorCode
) -> None:
    job_in(table, JobStatus.FAILED, error_code=code)

    with pytest.raises(JobConflict):
        enqueue(jobs)

    assert stored(table)["status"] == "FAILED"


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES - {JobStatus.FAILED}))
def test_no_other_finished_job_is_queued_again(
    jobs: JobRepository, table: Any, status: JobStatus
) -> None:
    job_in(table, status, error_code=ErrorCode.FAL_UNAVAILABLE)

    with pytest.raises(JobConflict):
        enqueue(jobs)


def test_a_live_claim_is_not_taken_over(jobs: JobRepository, table: Any) -> None:
    dispatched(table, "a1", claim_expires_at=NOW + CLAIM_SECONDS)

    with pytest.raises(JobConflict):
        reclaim(jobs, "a2", now=NOW + 1)

    assert stored(table)["open_attempts"] == {"a1"}


def test_an_expired_claim_is_taken_over_and_keeps_its_history_and_slot(
    jobs: JobRepository, table: Any
) -> None:
    dispatched(table, "a1", claim_expires_at=NOW)

    later = NOW + 1
    reclaim(jobs, "a2", now=later)

    item = stored(table)
    assert item["status"] == "PENDING"
    assert item["claim_expires_at"] == later + CLAIM_SECONDS
    assert item["next_check_at"] == later + RECONCILE_AFTER_SECONDS
    assert item["open_shard"] == open_shard(JOB_ID)
    assert item["open_attempts"] == {"a1", "a2"}  # the first call may still have reached fal
    assert item["created_at"] == "2026-12-04T10:00:00.000+00:00"
    assert item["slot"] == 0


def test_an_expired_claim_that_reached_fal_is_not_taken_over(
    jobs: JobRepository, table: Any
) -> None:
    dispatched(table, claim_expires_at=NOW - 1, request_id="req-1")

    with pytest.raises(JobConflict):
        reclaim(jobs)


@pytest.mark.parametrize("status", [JobStatus.QUEUED, *sorted(TERMINAL_STATUSES)])
def test_only_a_dispatched_claim_is_taken_over(
    jobs: JobRepository, table: Any, status: JobStatus
) -> None:
    job_in(table, status, claim_expires_at=NOW - 1)

    with pytest.raises(JobConflict):  # a waiting job has no slot; a finished one is done
        reclaim(jobs)

    assert stored(table)["status"] == status


def test_a_waiting_job_shows_its_position_and_estimated_start(
    jobs: JobRepository, table: Any
) -> None:
    enqueue(jobs)

    jobs.set_queue_position(JOB_ID, position=3, estimated_start_at="2026-12-04T10:05:00+00:00")
    assert stored(table)["queue_position"] == 3
    assert stored(table)["estimated_start_at"] == "2026-12-04T10:05:00+00:00"

    jobs.set_queue_position(JOB_ID, position=1, estimated_start_at=None)  # no rate measured yet
    assert stored(table)["queue_position"] == 1
    assert "estimated_start_at" not in stored(table)


def test_a_waiting_job_shows_whether_it_waits_for_budget(jobs: JobRepository, table: Any) -> None:
    enqueue(jobs)

    jobs.set_queue_position(JOB_ID, position=2, estimated_start_at=None, waiting_for_budget=True)
    assert stored(table)["waiting_for"] == "budget"
    jobs.set_queue_position(JOB_ID, position=1, estimated_start_at=None)  # left as it is
    assert stored(table)["waiting_for"] == "budget"
    jobs.set_queue_position(JOB_ID, position=1, estimated_start_at=None, waiting_for_budget=False)
    assert "waiting_for" not in stored(table)


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.CANCELLED])
def test_a_job_that_left_the_queue_gets_no_position(
    jobs: JobRepository, table: Any, status: JobStatus
) -> None:
    job_in(table, status)

    with pytest.raises(JobConflict):
        jobs.set_queue_position(JOB_ID, position=1, estimated_start_at=None)

    assert "queue_position" not in stored(table)


def test_a_cancelled_waiting_job_leaves_the_queue(jobs: JobRepository, table: Any) -> None:
    enqueue(jobs)
    jobs.set_queue_position(JOB_ID, position=1, estimated_start_at=None)

    cancelled = jobs.transition(JOB_ID, JobStatus.CANCELLED)

    assert cancelled.status is JobStatus.CANCELLED
    for absent in ("queue_lane", "queue_order", "queue_position", "open_shard"):
        assert absent not in stored(table)


# A job becomes PENDING only through the slot transaction (dispatch/slots.py, its own tests).
TARGETS = [s for s in JobStatus if s is not JobStatus.PENDING]


@pytest.mark.parametrize("source", list(JobStatus))
@pytest.mark.parametrize("target", TARGETS)
def test_transitions_follow_the_table(
    jobs: JobRepository, table: Any, source: JobStatus, target: JobStatus
) -> None:
    job_in(table, source, request_ids={"req-1"})

    if can_transition(source, target):
        moved = jobs.transition(JOB_ID, target)
        assert moved.status is target
        assert stored(table)["status"] == target
        # A final status leaves the reconciler's index and the queue's.
        assert ("open_shard" in stored(table)) is (target not in TERMINAL_STATUSES)
        assert "queue_lane" not in stored(table)
    else:
        with pytest.raises(JobConflict):
            jobs.transition(JOB_ID, target)
        assert stored(table)["status"] == source


def test_a_transition_of_a_missing_job_loses_and_creates_nothing(
    jobs: JobRepository, table: Any
) -> None:
    with pytest.raises(JobConflict):
        jobs.transition(JOB_ID, JobStatus.COMPLETED)

    assert jobs.get(JOB_ID) is None


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_a_finished_job_never_moves_back(
    jobs: JobRepository, table: Any, status: JobStatus
) -> None:
    job_in(table, status, request_ids={"req-1"}, request_id="req-1")

    for target in TARGETS:
        with pytest.raises(JobConflict):
            jobs.transition(JOB_ID, target, reopen_failed_submit=True)
    with pytest.raises(JobConflict):
        enqueue(jobs)
    with pytest.raises(JobConflict):
        reclaim(jobs, now=NOW + 10 * CLAIM_SECONDS)
    jobs.record_request_id(JOB_ID, "req-2", attempt="a9")

    assert stored(table)["status"] == status


@pytest.mark.parametrize("target", [JobStatus.COMPLETED, JobStatus.FAILED])
def test_a_result_finishes_a_job_the_submit_path_failed_before_fal_answered(
    jobs: JobRepository, table: Any, target: JobStatus
) -> None:
    job_in(table, JobStatus.FAILED, error_code=ErrorCode.FAL_UNAVAILABLE, open_attempts={"a1"})

    finished = jobs.transition(
        JOB_ID,
        target,
        add_request_id="req-1",
        close_attempt="a1",
        attempt_must_be_open=True,
        reopen_failed_submit=True,
    )

    assert finished.status is target
    assert finished.request_ids == {"req-1"}
    assert finished.item["request_id"] == "req-1"
    assert finished.open_attempts == frozenset()
    assert ("error_code" in finished.item) is (target is JobStatus.FAILED)


def test_a_result_for_an_attempt_already_answered_loses(jobs: JobRepository, table: Any) -> None:
    job_in(table, JobStatus.SUBMITTED, request_ids={"req-1"}, open_attempts={"a2"})

    with pytest.raises(JobConflict):
        jobs.transition(
            JOB_ID,
            JobStatus.COMPLETED,
            add_request_id="req-0",
            close_attempt="a1",
            attempt_must_be_open=True,
        )

    assert stored(table)["status"] == "SUBMITTED"


def test_a_request_id_submits_a_pending_job_and_closes_its_attempt(
    jobs: JobRepository, table: Any
) -> None:
    dispatched(table, "a1", claim_expires_at=NOW + CLAIM_SECONDS)

    submitted = jobs.record_request_id(JOB_ID, "req-1", attempt="a1")

    assert submitted.status is JobStatus.SUBMITTED
    assert submitted.item["request_id"] == "req-1"
    assert submitted.request_ids == {"req-1"}
    assert submitted.open_attempts == frozenset()
    assert submitted.submitted_at
    assert jobs.jobs_with_request("req-1") == {JOB_ID}


def test_a_request_id_learned_after_the_webhook_finished_the_job_keeps_its_status(
    jobs: JobRepository, table: Any
) -> None:
    job_in(table, JobStatus.COMPLETED, open_attempts={"a1"}, output_key="videos/x.mp4")

    learned = jobs.record_request_id(JOB_ID, "req-1", attempt="a1")

    assert learned.status is JobStatus.COMPLETED
    assert learned.item["request_id"] == "req-1"
    assert learned.open_attempts == frozenset()
    assert learned.item["output_key"] == "videos/x.mp4"


def test_a_request_id_for_a_deleted_job_does_not_recreate_it(
    jobs: JobRepository, table: Any
) -> None:
    dispatched(table, "a1", claim_expires_at=NOW + CLAIM_SECONDS)
    table.delete_item(Key={"job_id": JOB_ID})  # as DynamoDB's TTL does after the retention

    with pytest.raises(JobConflict):
        jobs.record_request_id(JOB_ID, "req-1", attempt="a1")

    assert jobs.get(JOB_ID) is None
    assert jobs.jobs_with_request("req-1") == set()


def test_an_extra_request_is_booked_once_per_open_attempt(jobs: JobRepository, table: Any) -> None:
    job_in(
        table, JobStatus.COMPLETED, request_id="req-1", request_ids={"req-1"}, open_attempts={"a1"}
    )

    jobs.record_extra_request(JOB_ID, "req-2", attempt="a1")
    with pytest.raises(JobConflict):
        jobs.record_extra_request(JOB_ID, "req-3", attempt="a1")

    item = stored(table)
    assert item["request_ids"] == {"req-1", "req-2"}
    assert item["request_id"] == "req-1"
    assert "open_attempts" not in item  # DynamoDB drops a set emptied by DELETE


def test_a_claim_adopted_from_fals_history_books_its_other_requests_without_an_attempt(
    jobs: JobRepository, table: Any
) -> None:
    dispatched(table, "a1", claim_expires_at=NOW - 1)

    jobs.record_request_id(JOB_ID, "req-1", attempt="a1")
    jobs.record_extra_request(JOB_ID, "req-2", attempt=None)

    item = stored(table)
    assert (item["status"], item["request_id"]) == ("SUBMITTED", "req-1")
    assert item["request_ids"] == {"req-1", "req-2"}
    assert jobs.jobs_with_request("req-2") == set()  # only the adopted one names the job


def test_an_extra_request_without_an_attempt_needs_a_recorded_request(
    jobs: JobRepository, table: Any
) -> None:
    dispatched(table, "a1", claim_expires_at=NOW - 1)

    with pytest.raises(JobConflict):
        jobs.record_extra_request(JOB_ID, "req-2", attempt=None)

    assert "request_ids" not in stored(table)


def test_a_released_claim_can_be_taken_over_at_once(jobs: JobRepository, table: Any) -> None:
    dispatched(table, "a1", claim_expires_at=NOW + CLAIM_SECONDS)

    jobs.release_claim(JOB_ID, attempts_error="fal is down")
    reclaim(jobs, "a2", now=NOW + 1)

    item = stored(table)
    assert item["attempts"] == 1
    assert item["last_error"] == "fal is down"
    assert item["open_attempts"] == {"a1", "a2"}


def test_a_released_claim_can_be_made_due_for_the_reconciler_at_once(
    jobs: JobRepository, table: Any
) -> None:
    dispatched(table, "a1", claim_expires_at=NOW + CLAIM_SECONDS)

    jobs.release_claim(JOB_ID, attempts_error="fal is down", check_at=NOW)

    assert [job.job_id for job in OpenJobs(lambda: table).due(now_epoch=NOW, limit=10)] == [JOB_ID]


def test_a_claim_the_webhook_moved_on_is_not_released(jobs: JobRepository, table: Any) -> None:
    job_in(table, JobStatus.COMPLETED, claim_expires_at=NOW + CLAIM_SECONDS)

    with pytest.raises(JobConflict):
        jobs.release_claim(JOB_ID, attempts_error="fal is down")

    assert stored(table)["claim_expires_at"] == NOW + CLAIM_SECONDS


def test_a_rejection_is_recorded_once(jobs: JobRepository, table: Any) -> None:
    item = {"job_id": JOB_ID, "error_code": ErrorCode.EMPTY_OBJECT, "error_message": "empty"}

    recorded = jobs.record_rejection(item)
    with pytest.raises(JobConflict):
        jobs.record_rejection({**item, "error_code": ErrorCode.OBJECT_NOT_FOUND})

    assert recorded["status"] == "REJECTED"
    assert stored(table)["error_code"] == "empty_object"


def test_only_a_stranded_claim_is_rejected(jobs: JobRepository, table: Any) -> None:
    dispatched(table, "a1", claim_expires_at=NOW + CLAIM_SECONDS)
    reject = {"code": ErrorCode.OBJECT_NOT_FOUND, "message": "deleted"}

    with pytest.raises(JobConflict):  # the claim is live: its submit is still running
        jobs.reject_stranded(JOB_ID, now_epoch=NOW + 1, **reject)
    rejected = jobs.reject_stranded(JOB_ID, now_epoch=NOW + CLAIM_SECONDS + 1, **reject)

    assert rejected.status is JobStatus.REJECTED
    assert "open_shard" not in rejected.item


def test_a_submitted_job_is_never_rejected_as_stranded(jobs: JobRepository, table: Any) -> None:
    job_in(table, JobStatus.PENDING, claim_expires_at=NOW - 1, request_id="req-1")

    with pytest.raises(JobConflict):
        jobs.reject_stranded(JOB_ID, now_epoch=NOW, code=ErrorCode.OBJECT_NOT_FOUND, message="x")


def test_open_jobs_are_due_until_they_finish(jobs: JobRepository, table: Any) -> None:
    open_jobs = OpenJobs(lambda: table)
    dispatched(table, "a1", claim_expires_at=NOW)
    reclaim(jobs, "a2", now=NOW + 1)  # as after a crashed submit: due again later
    due_at = NOW + 1 + RECONCILE_AFTER_SECONDS

    assert open_jobs.due(now_epoch=due_at - 1, limit=10) == []
    assert [job.job_id for job in open_jobs.due(now_epoch=due_at, limit=10)] == [JOB_ID]

    open_jobs.check_again_at(JOB_ID, due_at + 60)
    assert open_jobs.due(now_epoch=due_at, limit=10) == []

    jobs.transition(JOB_ID, JobStatus.FAILED)
    assert open_jobs.due(now_epoch=due_at + 60, limit=10) == []
    with pytest.raises(JobConflict):  # finished: nothing to reschedule
        open_jobs.check_again_at(JOB_ID, due_at + 120)


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
    ],
)
def test_a_throttled_table_is_a_retryable_error(code: str) -> None:
    table = boto3.resource("dynamodb").Table(TABLE)
    jobs = JobRepository(lambda: table)
    with Stubber(table.meta.client) as stubber:
        stubber.add_client_error("update_item", service_error_code=code, http_status_code=400)
        stubber.add_client_error("get_item", service_error_code=code, http_status_code=400)

        with pytest.raises(JobStoreBusy):
            enqueue(jobs)
        with pytest.raises(JobStoreBusy):
            jobs.get(JOB_ID)


def test_other_aws_errors_are_not_retried_as_throttling() -> None:
    table = boto3.resource("dynamodb").Table(TABLE)
    jobs = JobRepository(lambda: table)
    with Stubber(table.meta.client) as stubber:
        stubber.add_client_error("update_item", service_error_code="ResourceNotFoundException")

        with pytest.raises(ClientError) as raised:
            jobs.transition(JOB_ID, JobStatus.COMPLETED)

    assert error_code(raised.value) == "ResourceNotFoundException"
