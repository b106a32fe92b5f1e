"""Domain errors: each failure a user or the outside world can cause has its own type."""

from __future__ import annotations

from pika_pipeline.jobs.error_codes import ErrorCode


class PipelineError(Exception):
    """Base of every error this package raises on purpose."""


class MalformedMessage(PipelineError):
    """A queue message that is not an S3 upload event this pipeline understands."""


class UploadRejected(PipelineError):
    """The upload cannot become a video; the job is recorded as REJECTED with this code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FalRequestFailed(PipelineError):
    """fal refused the request for good (validation, auth): retrying would not help."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FalUnavailable(PipelineError):
    """fal could not be reached or asked us to back off: the message is retried later.

    ``kind`` says which, for the FalErrors metric: ``fal_rate_limited`` (429),
    ``fal_server_error`` (5xx), ``fal_timeout`` (no answer in time, 408), ``fal_conflict`` (409)
    or ``fal_unreachable`` (a connection that failed).
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class JobConflict(PipelineError):
    """A conditional write lost: another delivery already moved the job on."""


class WebhookRejected(PipelineError):
    """A webhook request not shown to be an authentic delivery for this job; nothing is written.

    Usually 401/4xx. 503 when it may be genuine but cannot be checked yet (an unknown signing
    key while a JWKS refresh is held back), so that fal delivers it again."""

    def __init__(self, reason: str, status_code: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class SigningKeysUnavailable(PipelineError):
    """fal's JWKS could not be fetched: the delivery is answered 503 so fal tries again."""


class VideoUnavailable(PipelineError):
    """The finished video could not be fetched or stored; fal's retry will try again."""
