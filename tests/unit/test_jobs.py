"""Job identity and the table of allowed status transitions."""

from __future__ import annotations

import re

import pytest

from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.statuses import (
    ALLOWED_TRANSITIONS,
    AT_FAL_STATUSES,
    REOPENINGS_BEFORE_FAL,
    TERMINAL_STATUSES,
    JobStatus,
    can_transition,
    reopenable_sources_of,
    sources_of,
)

UPLOAD = {"bucket": "input-bucket", "key": "uploads/cat.png", "version": "v1"}


def test_job_id_is_deterministic() -> None:
    assert job_id_for(**UPLOAD) == job_id_for(**UPLOAD)


def test_job_id_is_32_lowercase_hex_characters() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", job_id_for(**UPLOAD))


@pytest.mark.parametrize(
    "changed",
    [
        {"bucket": "other-bucket"},
        {"key": "uploads/dog.png"},
        {"key": "uploads/Cat.png"},
        {"key": "uploads/cat.png "},
        {"version": "v2"},
        {"version": ""},
    ],
)
def test_job_id_changes_when_bucket_key_or_version_changes(changed: dict[str, str]) -> None:
    assert job_id_for(**(UPLOAD | changed)) != job_id_for(**UPLOAD)


def test_job_id_does_not_confuse_where_bucket_ends_and_key_begins() -> None:
    assert job_id_for(bucket="ab", key="c/x.png", version="v") != job_id_for(
        bucket="a", key="bc/x.png", version="v"
    )


def test_job_id_does_not_confuse_where_key_ends_and_version_begins() -> None:
    assert job_id_for(bucket="b", key="uploads/x.png1", version="2") != job_id_for(
        bucket="b", key="uploads/x.png", version="12"
    )


def test_job_id_handles_unicode_keys() -> None:
    assert job_id_for(bucket="b", key="uploads/café.png", version="v") != job_id_for(
        bucket="b", key="uploads/cafe\u0301.png", version="v"
    )


def test_every_status_has_a_row_in_the_transition_table() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(JobStatus)


def test_terminal_statuses_are_completed_failed_rejected_expired_and_cancelled() -> None:
    assert {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.REJECTED,
        JobStatus.EXPIRED,
        JobStatus.CANCELLED,
    } == TERMINAL_STATUSES


def test_a_waiting_job_is_open_and_holds_no_fal_slot() -> None:
    assert JobStatus.QUEUED not in TERMINAL_STATUSES
    assert JobStatus.QUEUED not in AT_FAL_STATUSES
    assert {JobStatus.PENDING, JobStatus.SUBMITTED} == AT_FAL_STATUSES


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
@pytest.mark.parametrize("target", list(JobStatus))
def test_a_finished_job_never_changes_status(terminal: JobStatus, target: JobStatus) -> None:
    assert not can_transition(terminal, target)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_terminal_statuses_have_no_way_out_in_the_table(terminal: JobStatus) -> None:
    assert ALLOWED_TRANSITIONS[terminal] == frozenset()


def test_completed_can_never_become_failed() -> None:
    assert not can_transition(JobStatus.COMPLETED, JobStatus.FAILED)
    assert JobStatus.COMPLETED not in sources_of(JobStatus.FAILED)


@pytest.mark.parametrize("status", list(JobStatus))
def test_no_status_moves_to_itself(status: JobStatus) -> None:
    # A duplicate delivery must lose its conditional write, not silently "succeed".
    assert not can_transition(status, status)


@pytest.mark.parametrize("status", [s for s in JobStatus if s is not JobStatus.QUEUED])
def test_only_a_waiting_job_becomes_pending(status: JobStatus) -> None:
    # QUEUED -> PENDING is the dispatch; nothing moves back to PENDING.
    assert can_transition(JobStatus.QUEUED, JobStatus.PENDING)
    assert not can_transition(status, JobStatus.PENDING)
    assert not can_transition(status, JobStatus.PENDING, fal_request_known=False)


@pytest.mark.parametrize("status", list(JobStatus))
def test_nothing_moves_back_to_queued_while_a_fal_request_may_exist(status: JobStatus) -> None:
    assert not can_transition(status, JobStatus.QUEUED)


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.PENDING, JobStatus.SUBMITTED])
def test_every_open_job_may_be_cancelled(status: JobStatus) -> None:
    assert can_transition(status, JobStatus.CANCELLED)


@pytest.mark.parametrize(
    "target",
    [
        JobStatus.SUBMITTED,
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.EXPIRED,
        JobStatus.REJECTED,
    ],
)
def test_a_waiting_job_reaches_fal_only_through_dispatch(target: JobStatus) -> None:
    # Nothing was submitted for it: no result, failure or expiry can apply to it yet.
    assert not can_transition(JobStatus.QUEUED, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (JobStatus.PENDING, JobStatus.SUBMITTED),
        (JobStatus.PENDING, JobStatus.COMPLETED),  # the webhook beat the submit's bookkeeping
        (JobStatus.PENDING, JobStatus.FAILED),
        (JobStatus.SUBMITTED, JobStatus.COMPLETED),
        (JobStatus.SUBMITTED, JobStatus.FAILED),
    ],
)
def test_the_forward_moves_are_allowed(current: JobStatus, target: JobStatus) -> None:
    assert can_transition(current, target)


def test_submitted_cannot_go_back_to_pending_or_be_rejected() -> None:
    assert not can_transition(JobStatus.SUBMITTED, JobStatus.PENDING)
    assert not can_transition(JobStatus.SUBMITTED, JobStatus.REJECTED)


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (JobStatus.QUEUED, set()),  # only an upload (or a re-drive) puts a job in the queue
        (JobStatus.PENDING, {JobStatus.QUEUED}),
        (JobStatus.SUBMITTED, {JobStatus.PENDING}),
        (JobStatus.COMPLETED, {JobStatus.PENDING, JobStatus.SUBMITTED}),
        (JobStatus.FAILED, {JobStatus.PENDING, JobStatus.SUBMITTED}),
        # written when the job is created, or for a crashed claim whose image became unusable
        (JobStatus.REJECTED, {JobStatus.PENDING}),
        (JobStatus.EXPIRED, {JobStatus.PENDING, JobStatus.SUBMITTED}),
        (JobStatus.CANCELLED, {JobStatus.QUEUED, JobStatus.PENDING, JobStatus.SUBMITTED}),
    ],
)
def test_sources_of_lists_the_statuses_a_move_may_start_from(
    target: JobStatus, sources: set[JobStatus]
) -> None:
    assert sources_of(target) == sources


@pytest.mark.parametrize("target", list(JobStatus))
def test_sources_of_agrees_with_can_transition(target: JobStatus) -> None:
    assert sources_of(target) == {s for s in JobStatus if can_transition(s, target)}


@pytest.mark.parametrize("target", list(JobStatus))
def test_sources_of_never_includes_a_terminal_status(target: JobStatus) -> None:
    assert not sources_of(target) & TERMINAL_STATUSES


@pytest.mark.parametrize("target", [JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED])
def test_a_job_failed_before_fal_named_a_request_may_still_be_finished_or_queued_again(
    target: JobStatus,
) -> None:
    # fal may have queued a request whose answer was lost: its result may still finish the job,
    # and a re-driven message may queue it again (it holds no slot). Never once a fal request is
    # known.
    assert can_transition(JobStatus.FAILED, target, fal_request_known=False)
    assert not can_transition(JobStatus.FAILED, target, fal_request_known=True)
    assert reopenable_sources_of(target) == {JobStatus.FAILED}


@pytest.mark.parametrize(
    "final", [JobStatus.COMPLETED, JobStatus.REJECTED, JobStatus.EXPIRED, JobStatus.CANCELLED]
)
@pytest.mark.parametrize("target", list(JobStatus))
def test_completed_rejected_expired_and_cancelled_never_reopen(
    final: JobStatus, target: JobStatus
) -> None:
    assert not can_transition(final, target, fal_request_known=False)


def test_only_final_statuses_are_reopened_and_never_towards_submitted_or_rejected() -> None:
    assert set(REOPENINGS_BEFORE_FAL) <= TERMINAL_STATUSES
    for targets in REOPENINGS_BEFORE_FAL.values():
        assert not targets & {JobStatus.SUBMITTED, JobStatus.REJECTED, JobStatus.EXPIRED}
