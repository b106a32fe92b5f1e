"""The reconciler's pure decisions: when a job's deadline started, and what counts as recovered."""

from __future__ import annotations

from datetime import UTC, datetime

from pika_pipeline.reconciler import LEFT_OPEN, RECOVERIES, deadline_started, is_recovery

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
    assert is_recovery("recovered_completed")
    assert is_recovery("recovered_failed")
    assert is_recovery("resubmitted_submitted")
    assert is_recovery("resubmitted_rejected")
    # The webhook or another run got there first: the reconciler changed nothing.
    assert not is_recovery("recovered_duplicate")
    assert not is_recovery("resubmitted_duplicate")
    assert not is_recovery("already_final")
    assert not is_recovery("still_running")


def test_a_recovered_job_is_never_also_left_open() -> None:
    assert not RECOVERIES & LEFT_OPEN
    assert "expired" not in LEFT_OPEN  # an expiry has its own alarm; it is not a stuck job
