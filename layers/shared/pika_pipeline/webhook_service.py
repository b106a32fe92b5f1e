"""The webhook path: an authentic fal delivery for one job stores its video or records its error.

Every rejected request changes nothing: the checks (size, per-job token, fal's signature, request
id) all run before anything is written to S3 or DynamoDB.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from pika_pipeline.errors import (
    JobConflict,
    SigningKeysUnavailable,
    VideoUnavailable,
    WebhookRejected,
)
from pika_pipeline.fal_delivery import FalDelivery
from pika_pipeline.job_repository import Job, now_iso
from pika_pipeline.jobs import TERMINAL_STATUSES, JobStatus
from pika_pipeline.observability import count, logger, metrics
from pika_pipeline.webhook_tokens import token_matches

if TYPE_CHECKING:
    from pika_pipeline.job_events import JobEvents
    from pika_pipeline.job_repository import JobRepository
    from pika_pipeline.video_store import VideoStore
    from pika_pipeline.webhook_verifier import WebhookVerifier


@dataclass(frozen=True)
class WebhookRequest:
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lowercase names
    body: bytes


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    body: dict[str, Any] = field(default_factory=dict)


class WebhookService:
    def __init__(
        self,
        *,
        repository: JobRepository,
        verifier: WebhookVerifier,
        store: VideoStore,
        token_key: Callable[[], str],
        events: JobEvents,
        output_prefix: str,
        max_body_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jobs = repository
        self._verifier = verifier
        self._store = store
        self._token_key = token_key
        self._events = events
        self._output_prefix = output_prefix
        self._max_body_bytes = max_body_bytes
        self._clock = clock

    def handle(self, request: WebhookRequest) -> WebhookResponse:
        try:
            return self._handle(request)
        except WebhookRejected as rejection:
            logger.warning("Webhook rejected", extra={"reason": rejection.reason})
            count("WebhooksRejected", reason=rejection.reason)
            return WebhookResponse(rejection.status_code, {"error": rejection.reason})
        except SigningKeysUnavailable as exc:
            logger.error("Cannot verify deliveries right now", extra={"reason": str(exc)})
            return WebhookResponse(503, {"error": "signing_keys_unavailable"})
        except VideoUnavailable as exc:
            # 5xx makes fal deliver again later; nothing partial was stored.
            logger.warning("Video not stored; fal will retry", extra={"reason": str(exc)})
            return WebhookResponse(502, {"error": "video_unavailable"})

    def _handle(self, request: WebhookRequest) -> WebhookResponse:
        if len(request.body) > self._max_body_bytes:
            raise WebhookRejected("body_too_large", status_code=413)
        job_id = request.query.get("job_id", "")
        token = request.query.get("token", "")
        if not job_id or not token or not token_matches(job_id, token, self._token_key()):
            raise WebhookRejected("bad_token")
        logger.thread_safe_append_keys(job_id=job_id)
        signed_request_id = self._verifier.verify(request.headers, request.body)
        try:
            delivery = FalDelivery.model_validate_json(request.body)
        except ValidationError:
            raise WebhookRejected("malformed_body", status_code=400) from None
        if delivery.request_id != signed_request_id:
            raise WebhookRejected("request_id_mismatch")
        logger.thread_safe_append_keys(fal_request_id=delivery.request_id)

        job = self._jobs.get(job_id)
        if job is None:
            # The token proves this stack made the URL, so the job existed and has since been
            # deleted (retention). Retrying cannot help: answer 2xx so fal stops delivering.
            logger.warning("Delivery for a job that no longer exists")
            return WebhookResponse(200, {"outcome": "unknown_job"})
        if job.request_ids and delivery.request_id not in job.request_ids:
            raise WebhookRejected("foreign_request_id")
        if job.status in TERMINAL_STATUSES:
            logger.info("Duplicate delivery for a finished job", extra={"status": job.status})
            count("DuplicateDeliveries")
            return WebhookResponse(200, {"outcome": "duplicate", "status": job.status})

        video = delivery.video()
        if video is None:
            return self._record_failure(job, delivery)
        stored = self._store.copy(
            video.url,
            key=f"{self._output_prefix}{job_id}.mp4",
            expected_size=video.file_size,
            metadata={
                "job-id": job_id,
                "fal-request-id": delivery.request_id,
                "source-key": quote(str(job.item.get("source_key", ""))),
            },
        )
        generation_seconds = self._generation_seconds(job)
        attributes: dict[str, Any] = {
            "output_bucket": stored.bucket,
            "output_key": stored.key,
            "video_bytes": stored.size,
            "completed_at": now_iso(),
            "completed_request_id": delivery.request_id,
        }
        if generation_seconds is not None:
            attributes["generation_seconds"] = Decimal(str(round(generation_seconds, 3)))
        try:
            completed = self._jobs.transition(
                job_id,
                JobStatus.COMPLETED,
                attributes=attributes,
                add_request_id=delivery.request_id,
            )
        except JobConflict:
            # A concurrent duplicate finished first; it wrote the same key with the same video.
            count("DuplicateDeliveries")
            return WebhookResponse(200, {"outcome": "duplicate"})
        self._events.finished(completed)
        count("VideosCompleted")
        metrics.add_metric(name="VideoBytes", unit=MetricUnit.Bytes, value=stored.size)
        if generation_seconds is not None:
            metrics.add_metric(
                name="GenerationSeconds", unit=MetricUnit.Seconds, value=generation_seconds
            )
        logger.info("Video stored", extra={"output_key": stored.key, "video_bytes": stored.size})
        return WebhookResponse(200, {"outcome": "completed"})

    def _record_failure(self, job: Job, delivery: FalDelivery) -> WebhookResponse:
        code, message = delivery.failure()
        try:
            failed = self._jobs.transition(
                job.job_id,
                JobStatus.FAILED,
                attributes={"error_code": code, "error_message": message},
                add_request_id=delivery.request_id,
            )
        except JobConflict:
            return WebhookResponse(200, {"outcome": "duplicate"})
        self._events.finished(failed)
        logger.warning("fal could not make the video", extra={"error_code": code})
        count("VideosFailed", error_code=code)
        return WebhookResponse(200, {"outcome": "failed", "error_code": code})

    def _generation_seconds(self, job: Job) -> float | None:
        submitted = job.submitted_at
        if not submitted:
            return None
        return max(0.0, self._clock() - datetime.fromisoformat(submitted).timestamp())
