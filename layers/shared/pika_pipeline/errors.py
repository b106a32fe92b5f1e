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
    """A webhook request that is not an authentic delivery for this job."""

    def __init__(self, reason: str, status_code: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class SigningKeysUnavailable(PipelineError):
    """fal's JWKS could not be fetched: the delivery is answered 503 so fal tries again."""


class VideoUnavailable(PipelineError):
    """The finished video could not be fetched or stored; fal's retry will try again."""


class VideoRejected(PipelineError):
    """The finished video can never be stored, however often it is fetched again (S3 refused
    it with a 4xx): the job ends FAILED with ``code``, so that nobody retries it forever."""

    code = ErrorCode.VIDEO_REJECTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VideoTooLarge(VideoRejected):
    """The video is larger than MaxVideoBytes."""

    code = ErrorCode.VIDEO_TOO_LARGE


class VideoNotMp4(VideoRejected):
    """What the media host serves is not an MP4 (or is served with a Content-Encoding)."""

    code = ErrorCode.VIDEO_NOT_MP4


class VideoHostNotAllowed(VideoRejected):
    """fal's video URL is one the webhook never fetches: not https, not a host of MediaHosts,
    a private address, or a URL that could be read two ways (userinfo, backslash, odd port)."""

    code = ErrorCode.VIDEO_HOST_NOT_ALLOWED
