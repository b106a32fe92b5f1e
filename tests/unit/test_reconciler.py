"""The reconciler's decisions: when a job's deadline started, what counts as recovered, and that
no job stays open past its deadline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pika_pipeline.errors import VideoUnavailable
from pika_pipeline.jobs.job import Job
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.reconcile.reconciler import (
    ReconcileOutcome,
    Reconciler,
    deadline_started,
    is_recovery,
    leaves_open,
)
from pika_pipeline.results.recorder import RecordOutcome

SUBMITTED = "2026-12-02T06:00:10.000+00:00"
CREATED = "2026-12-02T06:00:00.000+00:00"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).astimezone(UTC).timestamp()


def test_a_submitted_jobs_deadline_runs_from_its_submission() -> None:
    item = {"created_at": CREATED, "submitted_at": SUBMITTED, "updated_at": SUBMITTED}

    assert deadline_started(item) == _epoch(SUBMITTED)


def test_a_claim_that_never_reached_fal_runs_from_its_creation() -> None:
    # updated_at is not a start: every released claim moves it, so the deadline would never come.
    item = {"created_at": CREATED, "updated_at": SUBMITTED}

    assert deadline_started(item) == _epoch(CREATED)


def test_a_record_without_timestamps_has_no_deadline() -> None:
    assert deadline_started({"job_id": "a", "status": "PENDING"}) is None


def test_only_outcomes_that_moved_the_job_on_are_recoveries() -> None:
    recoveries = {outcome for outcome in ReconcileOutcome if is_recovery(outcome)}

    assert recoveries == {
        ReconcileOutcome.RECOVERED_COMPLETED,
        ReconcileOutcome.RECOVERED_FAILED,
        ReconcileOutcome.ADOPTED,
        ReconcileOutcome.RESUBMITTED_SUBMITTED,
        ReconcileOutcome.RESUBMITTED_FAILED,
        ReconcileOutcome.RESUBMITTED_REJECTED,
    }


def test_every_outcome_either_settles_the_job_or_leaves_it_counted_as_open() -> None:
    # A check that neither ends the job nor counts it as open would hide it from
    # OldestOpenJobSeconds (as the "ignored" resubmit once did).
    left_open = {outcome for outcome in ReconcileOutcome if leaves_open(outcome)}

    assert left_open == {
        ReconcileOutcome.STILL_RUNNING,
        ReconcileOutcome.CLAIM_STILL_LIVE,
        ReconcileOutcome.RETRY_LATER,
        ReconcileOutcome.ERRORS,
        ReconcileOutcome.NOT_REACHED,
    }
    assert not any(is_recovery(outcome) for outcome in left_open)
    # An expiry has its own alarm; it is not a stuck job.
    assert not leaves_open(ReconcileOutcome.EXPIRED)


class FakeJobs:
    """The job table as the reconciler uses it: read a job, move it on."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.item = item
        self.checked_again_at: list[int] = []
        self.cancelled: list[str] = []
        self.published: list[dict[str, Any]] = []

    def get(self, job_id: str) -> Job | None:
        return Job(dict(self.item))

    def transition(self, job_id: str, target: JobStatus, **kwargs: Any) -> Job:
        self.item = {**self.item, "status": target, **kwargs.get("attributes", {})}
        return Job(dict(self.item))

    def due(self, *, now_epoch: int, limit: int) -> list[Job]:
        return [Job(dict(self.item))]

    def check_again_at(self, job_id: str, when: int) -> None:
        self.checked_again_at.append(when)

    def cancel(self, request_id: str, *, endpoint: str) -> None:
        self.cancelled.append(request_id)

    def outcome(self, request_id: str, *, endpoint: str) -> object:
        return object()  # fal finished: the reconciler records the result

    def finished(self, job: Job) -> None:
        self.published.append(job.item)


class FailingRecorder:
    def __init__(self, error: Exception) -> None:
        self._error = error

    def record(self, job: Job, delivery: object) -> RecordOutcome:
        raise self._error


def _reconciler(jobs: FakeJobs, error: Exception, *, now: float) -> Reconciler:
    return Reconciler(
        open_jobs=jobs,  # type: ignore[arg-type]
        repository=jobs,  # type: ignore[arg-type]
        fal=lambda: jobs,  # type: ignore[arg-type,return-value]
        recorder=FailingRecorder(error),  # type: ignore[arg-type]
        submit=None,  # type: ignore[arg-type]
        events=jobs,  # type: ignore[arg-type]
        reconcile_after_seconds=60,
        job_deadline_seconds=3600,
        clock=lambda: now,
    )


SUBMITTED_JOB = {
    "job_id": "job-1",
    "status": "SUBMITTED",
    "request_id": "req-1",
    "request_ids": ["req-1"],
    "submitted_at": SUBMITTED,
}


@pytest.mark.parametrize(
    ("error", "outcome", "code"),
    [
        (VideoUnavailable("S3 answered 500"), "retry_later", "video_unavailable"),
        (RuntimeError("a bug"), "errors", "reconcile_failed"),
    ],
)
def test_a_job_that_cannot_be_settled_is_tried_again_until_its_deadline_then_fails(
    error: Exception, outcome: str, code: str
) -> None:
    before = FakeJobs(SUBMITTED_JOB)
    report = _reconciler(before, error, now=_epoch(SUBMITTED) + 3599).run(reconcile_batch_size=1)

    assert report == {outcome: 1}
    assert before.item["status"] == "SUBMITTED"
    assert before.checked_again_at == [int(_epoch(SUBMITTED) + 3599) + 60]

    past = FakeJobs(SUBMITTED_JOB)
    report = _reconciler(past, error, now=_epoch(SUBMITTED) + 3600).run(reconcile_batch_size=1)

    assert report == {"gave_up_at_deadline": 1}
    assert (past.item["status"], past.item["error_code"]) == ("FAILED", code)
    assert past.cancelled == ["req-1"]
    assert [event["status"] for event in past.published] == ["FAILED"]
    assert past.checked_again_at == []


def test_a_job_an_operator_cancelled_at_fal_is_cancelled_there_and_ends_cancelled() -> None:
    jobs = FakeJobs({**SUBMITTED_JOB, "cancel_requested": True, "cancel_requested_by": "ops"})

    reconciler = _reconciler(jobs, RuntimeError("unused"), now=_epoch(SUBMITTED) + 60)
    report = reconciler.run(reconcile_batch_size=1)

    assert report == {"cancelled": 1}
    assert jobs.cancelled == ["req-1"]
    assert (jobs.item["status"], jobs.item["error_code"]) == ("CANCELLED", "cancelled")
    assert "ops" in jobs.item["error_message"]
    assert [event["status"] for event in jobs.published] == ["CANCELLED"]


def test_a_cancel_waits_for_a_live_claim_to_answer() -> None:
    # A dispatch may be calling fal right now: cancelling before it records the request id
    # would leave that request running and paid for.
    now = _epoch(SUBMITTED) + 60
    claimed = {
        "job_id": "job-1",
        "status": "PENDING",
        "claim_expires_at": int(now) + 30,
        "dispatched_at": SUBMITTED,
        "cancel_requested": True,
    }
    jobs = FakeJobs(claimed)

    report = _reconciler(jobs, RuntimeError("unused"), now=now).run(reconcile_batch_size=1)

    assert report == {"claim_still_live": 1}
    assert jobs.item["status"] == "PENDING"
    assert jobs.checked_again_at == [int(now) + 30]
    assert (jobs.cancelled, jobs.published) == ([], [])
