"""The webhook path: an authentic fal delivery for one job stores its video or records its error.

Every rejected request changes nothing: the checks (size, per-attempt token, fal's signature,
request id) all run before anything is written to S3 or DynamoDB. A request id is this job's when
the job recorded it, or when it arrives on the URL of a call of this job that never learned its
request id: a genuine result for another job is refused either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, assert_never

from pika_pipeline.errors import (
    JobStoreBusy,
    RejectionReason,
    SigningKeysUnavailable,
    VideoUnavailable,
    WebhookRejected,
)
from pika_pipeline.fal.delivery import FalDelivery, MalformedDelivery
from pika_pipeline.observability import Metric, count, logger
from pika_pipeline.webhook.tokens import token_matches

if TYPE_CHECKING:
    from pika_pipeline.jobs.repository import JobRepository
    from pika_pipeline.results.recorder import ResultRecorder
    from pika_pipeline.webhook.verifier import WebhookVerifier


@dataclass(frozen=True)
class WebhookRequest:
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lowercase names
    body: bytes


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    body: dict[str, Any] = field(default_factory=dict)


def status_of(reason: RejectionReason) -> int:
    """The HTTP answer to a refused request: 401 when nothing proves it is fal's delivery for
    this job, 400 or 413 when it is, but what it carries cannot be used."""
    match reason:
        case RejectionReason.BODY_TOO_LARGE:
            return 413
        case RejectionReason.MALFORMED_BODY:
            return 400
        case (
            RejectionReason.BAD_TOKEN
            | RejectionReason.MISSING_SIGNATURE_HEADER
            | RejectionReason.WRONG_USER_ID
            | RejectionReason.MALFORMED_TIMESTAMP
            | RejectionReason.STALE_TIMESTAMP
            | RejectionReason.MALFORMED_SIGNATURE
            | RejectionReason.BAD_SIGNATURE
            | RejectionReason.REQUEST_ID_MISMATCH
            | RejectionReason.FOREIGN_REQUEST_ID
        ):
            return 401
        case _:
            assert_never(reason)


class WebhookService:
    def __init__(
        self,
        *,
        repository: JobRepository,
        verifier: WebhookVerifier,
        recorder: ResultRecorder,
        token_key: Callable[[], str],
        max_body_bytes: int,
    ) -> None:
        self._jobs = repository
        self._verifier = verifier
        self._recorder = recorder
        self._token_key = token_key
        self._max_body_bytes = max_body_bytes

    def handle(self, request: WebhookRequest) -> WebhookResponse:
        try:
            return self._handle(request)
        except WebhookRejected as rejection:
            logger.warning("Webhook rejected", extra={"reason": rejection.reason})
            count(Metric.WEBHOOKS_REJECTED, reason=rejection.reason)
            return WebhookResponse(status_of(rejection.reason), {"error": rejection.reason.value})
        except SigningKeysUnavailable as exc:
            logger.error("Cannot verify deliveries right now", extra={"reason": str(exc)})
            return WebhookResponse(503, {"error": "signing_keys_unavailable"})
        except VideoUnavailable as exc:
            # 5xx makes fal deliver again later; nothing partial was stored.
            logger.warning("Video not stored; fal will retry", extra={"reason": str(exc)})
            return WebhookResponse(502, {"error": "video_unavailable"})
        except JobStoreBusy as exc:
            # DynamoDB throttled past boto3's retries: fal delivers again later.
            logger.warning("Jobs table busy; fal will retry", extra={"reason": str(exc)})
            return WebhookResponse(503, {"error": "job_store_busy"})

    def _handle(self, request: WebhookRequest) -> WebhookResponse:
        if len(request.body) > self._max_body_bytes:
            raise WebhookRejected(RejectionReason.BODY_TOO_LARGE)
        job_id = request.query.get("job_id", "")
        attempt = request.query.get("attempt", "")
        token = request.query.get("token", "")
        if not (job_id and attempt and token) or not token_matches(
            job_id, attempt, token, self._token_key()
        ):
            raise WebhookRejected(RejectionReason.BAD_TOKEN)
        logger.thread_safe_append_keys(job_id=job_id)
        signed_request_id = self._verifier.verify(request.headers, request.body)
        try:
            delivery = FalDelivery.from_json(request.body)
        except MalformedDelivery:
            raise WebhookRejected(RejectionReason.MALFORMED_BODY) from None
        if delivery.request_id != signed_request_id:
            raise WebhookRejected(RejectionReason.REQUEST_ID_MISMATCH)
        logger.thread_safe_append_keys(fal_request_id=delivery.request_id)

        job = self._jobs.get(job_id)
        if job is None:
            # The token proves this stack made the URL, so the job existed and has since been
            # deleted (retention). Retrying cannot help: answer 2xx so fal stops delivering.
            logger.warning("Delivery for a job that no longer exists")
            return WebhookResponse(200, {"outcome": "unknown_job"})
        if delivery.request_id in job.request_ids:
            unanswered_attempt = None
        elif attempt in job.open_attempts and not self._jobs.jobs_with_request(
            delivery.request_id
        ) - {job_id}:
            # fal queued this request for one of the job's calls whose answer was never recorded
            # (lost to a timeout or a crash, or simply not yet back), and no other job claims it.
            logger.info("Result of a call with no recorded answer", extra={"attempt": attempt})
            unanswered_attempt = attempt
        else:
            raise WebhookRejected(RejectionReason.FOREIGN_REQUEST_ID)
        outcome = self._recorder.record(job, delivery, unanswered_attempt=unanswered_attempt)
        return WebhookResponse(200, {"outcome": outcome.value})
