"""Job identity, statuses, error codes and the one table of allowed status transitions."""

from __future__ import annotations

import hashlib
from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "PENDING"  # claimed by the submit path; fal not called yet (or the call is in flight)
    SUBMITTED = "SUBMITTED"  # fal accepted the request; waiting for its webhook
    COMPLETED = "COMPLETED"  # the video is stored in the output bucket
    FAILED = "FAILED"  # fal (or the pipeline) could not make the video
    REJECTED = "REJECTED"  # the upload itself was unusable; nothing was paid for
    EXPIRED = "EXPIRED"  # fal never finished within the deadline; the request was cancelled


TERMINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.EXPIRED}
)

# Which status may follow which. Every status change is a conditional write built from this table,
# so a late or duplicate event can never move a job backwards.
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # PENDING -> REJECTED only for a claim whose submit crashed and whose upload has since become
    # unusable (deleted, say): the repository guards it with "claim expired, no request id".
    JobStatus.PENDING: frozenset(
        {
            JobStatus.SUBMITTED,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.EXPIRED,
            JobStatus.REJECTED,
        }
    ),
    JobStatus.SUBMITTED: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.EXPIRED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.REJECTED: frozenset(),
    JobStatus.EXPIRED: frozenset(),
}


# The only moves out of a final status, allowed only while the job knows no fal request: the
# submit path failed it without fal ever answering with a request id. fal may still have queued a
# request whose answer was lost, and its result then finishes the job (COMPLETED, or FAILED with
# fal's reason); a message re-driven from the dead-letter queue may claim it again (PENDING). The
# repository adds the guard "no request id recorded" to every write that uses one of these moves.
REOPENINGS_BEFORE_FAL: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.FAILED: frozenset({JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED}),
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


class ErrorCode(StrEnum):
    MISSING_PROMPT = "missing_prompt"
    PROMPT_TOO_LONG = "prompt_too_long"
    INVALID_METADATA = "invalid_metadata"
    INVALID_RESOLUTION = "invalid_resolution"
    INVALID_DURATION = "invalid_duration"
    INVALID_SEED = "invalid_seed"
    EMPTY_OBJECT = "empty_object"
    IMAGE_TOO_LARGE = "image_too_large"
    UNSUPPORTED_IMAGE_TYPE = "unsupported_image_type"
    OBJECT_NOT_FOUND = "object_not_found"
    OUTSIDE_INPUT_PREFIX = "outside_input_prefix"
    FAL_VALIDATION = "fal_validation"
    FAL_AUTH = "fal_auth"
    FAL_UNAVAILABLE = "fal_unavailable"
    FAL_ERROR = "fal_error"
    FAL_PAYLOAD_ERROR = "fal_payload_error"
    FAL_DEADLINE = "fal_deadline"


def job_id_for(*, bucket: str, key: str, version: str) -> str:
    """A stable id for one upload: the same object version always maps to the same job.

    ``version`` is the S3 version id (the input bucket is versioned, so every upload has one);
    for an unversioned bucket the caller passes the event's sequencer or ETag instead.
    """
    identity = "\n".join((bucket, key, version)).encode("utf-8")
    return hashlib.sha256(identity).hexdigest()[:32]
