"""The reconciler's pure decisions: when a job's deadline started, and what counts as recovered."""

from __future__ import annotations

from datetime import UTC, datetime

from pika_pipeline.reconcile.reconciler import (
    ReconcileOutcome,
    deadline_started,
    is_recovery,
    leaves_open,
)

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
