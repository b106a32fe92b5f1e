"""Domain errors: each failure a user or the outside world can cause has its own type."""

from __future__ import annotations

from enum import StrEnum

from pika_pipeline.jobs.error_codes import ErrorCode


class PipelineError(Exception):
    """Base of every error this package raises on purpose."""


class MalformedMessage(PipelineError):
    """A queue message that is not an S3 upload event this pipeline understands."""


class UploadRejected(PipelineError):
    """The upload cannot become a video; the job is recorded as REJECTED with this code."""

    def __init__(self, code: ErrorCode, message: str, *, batch: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # The upload's batch, when it was known before the rejection: the rejection counts there.
        self.batch = batch


class FalRequestFailed(PipelineError):
    """fal refused the request for good (validation, auth): retrying would not help."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FalUnavailableKind(StrEnum):
    """Why fal was unavailable; the values are the FalErrors metric's ``error_type``."""

    RATE_LIMITED = "fal_rate_limited"  # 429
    SERVER_ERROR = "fal_server_error"  # 5xx
    TIMEOUT = "fal_timeout"  # no answer in time, or 408
    CONFLICT = "fal_conflict"  # 409
    UNREACHABLE = "fal_unreachable"  # a connection that failed
    UNAVAILABLE = "fal_unavailable"  # any other retryable answer about a request


class FalUnavailable(PipelineError):
    """fal could not be reached or asked us to back off: the message is retried later."""

    def __init__(
        self, message: str, *, kind: FalUnavailableKind, created_nothing: bool = False
    ) -> None:
        super().__init__(message)
        self.kind = kind
        # fal answered with a refusal, or was never reached: no request exists to be billed
        # (a lost answer may have created one, so it is False then).
        self.created_nothing = created_nothing


class FalHistoryUnavailable(PipelineError):
    """fal's request history could not be read (unreachable, an error answer): whether a lost
    submit reached fal is unknown, so nothing is submitted again on its account."""


class JobConflict(PipelineError):
    """A conditional write lost: another delivery already moved the job on, or it is gone."""


class JobStoreBusy(PipelineError):
    """The jobs table kept refusing a call (throttled, or an item in a transaction) past boto3's
    own retries: nothing was written, and the work is retried later, as in a fal outage."""


class RejectionReason(StrEnum):
    """Why a webhook request was refused; the values are the answer's ``error`` and the
    WebhooksRejected metric's ``reason``. The HTTP status of each is the webhook's concern
    (``webhook.service.status_of``)."""

    BODY_TOO_LARGE = "body_too_large"
    BAD_TOKEN = "bad_token"  # noqa: S105 (a reason, not a secret)
    MISSING_SIGNATURE_HEADER = "missing_signature_header"
    WRONG_USER_ID = "wrong_user_id"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    MALFORMED_SIGNATURE = "malformed_signature"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED_BODY = "malformed_body"
    REQUEST_ID_MISMATCH = "request_id_mismatch"
    FOREIGN_REQUEST_ID = "foreign_request_id"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 (a reason, not a secret)
    SIGNING_KEY_NOT_YET_KNOWN = "signing_key_not_yet_known"


class WebhookRejected(PipelineError):
    """A webhook request not shown to be an authentic delivery for this job; nothing is written.

    Usually 401/4xx. 503 when it may be genuine but cannot be checked yet (an unknown signing
    key while a JWKS refresh is held back), so that fal delivers it again."""

    def __init__(self, reason: RejectionReason) -> None:
        super().__init__(reason)
        self.reason = reason


class SigningKeysUnavailable(PipelineError):
    """fal's JWKS could not be fetched: the delivery is answered 503 so fal tries again."""


class UrlNotAllowed(PipelineError):
    """An outbound URL this pipeline never calls: not https, not an allowlisted host, a private
    or link-local address, or a URL that could be read two ways (userinfo, backslash, odd port)."""


class HostUnresolvable(PipelineError):
    """DNS gave no address for an outbound URL's host (a later try may succeed)."""


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
