"""Job statuses and the one table of allowed status transitions."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "QUEUED"  # a valid upload waiting in the pipeline for a fal slot; nothing paid yet
    PENDING = "PENDING"  # claimed by the submit path; fal not called yet (or the call is in flight)
    SUBMITTED = "SUBMITTED"  # fal accepted the request; waiting for its webhook
    COMPLETED = "COMPLETED"  # the video is stored in the output bucket
    FAILED = "FAILED"  # fal (or the pipeline) could not make the video
    REJECTED = "REJECTED"  # the upload itself was unusable; nothing was paid for
    EXPIRED = "EXPIRED"  # fal never finished within the deadline; the request was cancelled
    CANCELLED = "CANCELLED"  # an operator cancelled it (while waiting: nothing was paid)


TERMINAL_STATUSES = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.REJECTED,
        JobStatus.EXPIRED,
        JobStatus.CANCELLED,
    }
)

# The statuses of a job that may have a request at fal: the ones that hold a dispatch slot.
AT_FAL_STATUSES = frozenset({JobStatus.PENDING, JobStatus.SUBMITTED})

# Which status may follow which. Every status change is a conditional write built from this table,
# so a late or duplicate event can never move a job backwards.
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # QUEUED -> PENDING is the dispatch (it takes a slot); a waiting job may be cancelled.
    JobStatus.QUEUED: frozenset({JobStatus.PENDING, JobStatus.CANCELLED}),
    # PENDING -> REJECTED only for a claim whose submit crashed and whose upload has since become
    # unusable (deleted, say): the repository guards it with "claim expired, no request id".
    JobStatus.PENDING: frozenset(
        {
            JobStatus.SUBMITTED,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.EXPIRED,
            JobStatus.REJECTED,
            JobStatus.CANCELLED,
        }
    ),
    # Cancelling a job at fal cancels the fal request, as the reconciler's expiry does.
    JobStatus.SUBMITTED: frozenset(
        {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.REJECTED: frozenset(),
    JobStatus.EXPIRED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


# The only moves out of a final status, allowed only while the job knows no fal request: the
# submit path failed it without fal ever answering with a request id. fal may still have queued a
# request whose answer was lost, and its result then finishes the job (COMPLETED, or FAILED with
# fal's reason); a message re-driven from the dead-letter queue claims it again: it waits for a
# dispatch slot like any new upload (QUEUED), as it holds none. The
# repository adds the guard "no request id recorded" to every write that uses one of these moves.
REOPENINGS_BEFORE_FAL: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.FAILED: frozenset({JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED}),
}


def can_transition(
    current: JobStatus, target: JobStatus, *, fal_request_known: bool = True
) -> bool:
    if target in ALLOWED_TRANSITIONS[current]:
        return True
    return not fal_request_known and target in REOPENINGS_BEFORE_FAL.get(current, frozenset())


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """The statuses a job may be in for a move to ``target`` to be allowed."""
    return frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)


def reopenable_sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """The final statuses a move to ``target`` may start from while no fal request is known."""
    return frozenset(s for s, targets in REOPENINGS_BEFORE_FAL.items() if target in targets)
