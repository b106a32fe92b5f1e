"""Recording fal's result for a job: the one code path the webhook and the reconciler share.

An OK result streams the video into the output bucket and completes the job; an ERROR result
fails it with fal's reason. Each is one conditional transition, so whoever records first wins and
the other finds a duplicate; a finished job is never changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aws_lambda_powertools.metrics import MetricUnit

from pika_pipeline.errors import JobConflict, JobStoreBusy, VideoRejected
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.job import Job, now_iso
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.observability import Metric, count, logger, metrics
from pika_pipeline.results.video_store import VideoStore
from pika_pipeline.spend.refund_rules import result_refunds

if TYPE_CHECKING:
    from pika_pipeline.fal.delivery import FalDelivery
    from pika_pipeline.jobs.events import JobEvents
    from pika_pipeline.jobs.repository import JobRepository
    from pika_pipeline.results.video_placement import VideoPlacement
    from pika_pipeline.spend.ledger import SpendLedger


# S3 refuses user metadata over 2 KB (names and values, UTF-8), and every copy of the video would
# then fail. The source key and the correlation id are the parts whose size the user chooses:
# each is cut to its budget (the job id, in the metadata, links the video to the whole of both).
# Values are percent-quoted: S3 metadata must be ASCII.
# A record that finds the job changed under it (not finished) tries again with the job as it is.
_RECORD_TRIES = 3
METADATA_LIMIT_BYTES = 2048
SOURCE_KEY_METADATA_BYTES = 1024
SOURCE_VERSION_METADATA_BYTES = 128
CORRELATION_ID_METADATA_BYTES = 384


def video_metadata(
    *,
    job_id: str,
    request_id: str,
    source_key: str,
    source_version: str | None = None,
    correlation_id: str | None = None,
) -> dict[str, str]:
    """The video object's user metadata, always within S3's 2 KB: it links the video back to
    its job, its upload (key and version) and the uploader's correlation id."""
    metadata = {
        "job-id": job_id[:128],
        "fal-request-id": quote(request_id, safe="")[:256],
    }
    quoted, truncated = _quote_within(source_key, SOURCE_KEY_METADATA_BYTES)
    metadata["source-key"] = quoted
    if truncated:
        metadata["source-key-truncated"] = "true"
    if source_version:
        metadata["source-version"] = _quote_within(source_version, SOURCE_VERSION_METADATA_BYTES)[0]
    if correlation_id:
        quoted, truncated = _quote_within(correlation_id, CORRELATION_ID_METADATA_BYTES)
        metadata["correlation-id"] = quoted
        if truncated:
            metadata["correlation-id-truncated"] = "true"
    assert sum(len(k) + len(v) for k, v in metadata.items()) <= METADATA_LIMIT_BYTES
    return metadata


def _quote_within(text: str, limit: int) -> tuple[str, bool]:
    """``text`` percent-quoted, cut at a whole character so the result has at most ``limit``
    bytes; and whether it was cut."""
    quoted = quote(text)
    if len(quoted) <= limit:
        return quoted, False
    kept: list[str] = []
    size = 0
    for character in text:
        piece = quote(character)
        if size + len(piece) > limit:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept), True


class RecordOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    DUPLICATE = "duplicate"


class ResultRecorder:
    def __init__(
        self,
        *,
        repository: JobRepository,
        store: VideoStore,
        events: JobEvents,
        placement: VideoPlacement,
        clock: Callable[[], float] = time.time,
        ledger: SpendLedger | None = None,
    ) -> None:
        self._ledger = ledger
        self._jobs = repository
        self._store = store
        self._events = events
        self._placement = placement
        self._clock = clock

    def record(
        self, job: Job, delivery: FalDelivery, *, unanswered_attempt: str | None = None
    ) -> RecordOutcome:
        """Raises VideoUnavailable (nothing stored) when the video cannot be copied yet.

        A video that can never be stored (VideoRejected: too large, not an MP4, a host not in
        MediaHosts, refused by S3) ends the job FAILED with that error's code, so that neither
        fal's retries nor the reconciler fetch it again and again.

        ``unanswered_attempt``: the delivery is for a request of that submit attempt whose id
        the job never learned; recording the result also books the id and closes the attempt.
        """
        if not job.awaits_result:
            logger.info("Result for a finished job", extra={"status": job.status})
            return self._duplicate(job, delivery, unanswered_attempt)
        video = delivery.video()
        if video is None:
            waits_on = job.item.get("request_id")
            if waits_on and waits_on != delivery.request_id:
                return self._other_request_failed(job, delivery, unanswered_attempt)
            return self._record_failure(job, delivery, unanswered_attempt, delivery.failure())
        # At the readable key, or at this request's own staging key: two results racing for one
        # job never overwrite each other; the transition below picks the one kept.
        try:
            placed = self._placement.store(
                job,
                request_id=delivery.request_id,
                url=video.url,
                expected_size=video.file_size,
                metadata=video_metadata(
                    job_id=job.job_id,
                    request_id=delivery.request_id,
                    source_key=str(job.item.get("source_key", "")),
                    source_version=str(job.item.get("source_version") or ""),
                    correlation_id=job.correlation_id,
                ),
            )
        except VideoRejected as rejected:
            logger.warning("The video can never be stored", extra={"reason": rejected.message})
            return self._record_failure(
                job, delivery, unanswered_attempt, (rejected.code, rejected.message)
            )
        stored = placed.stored
        generation_seconds = self._generation_seconds(job)
        attributes: dict[str, Any] = {
            "output_bucket": stored.bucket,
            "output_key": stored.key,
            "video_bytes": stored.size,
            "completed_at": now_iso(),
            "completed_request_id": placed.request_id,
        }
        if generation_seconds is not None:
            attributes["generation_seconds"] = Decimal(str(round(generation_seconds, 3)))
        for _ in range(_RECORD_TRIES):
            try:
                completed = self._jobs.transition(
                    job.job_id,
                    JobStatus.COMPLETED,
                    attributes=attributes,
                    add_request_id=delivery.request_id,
                    close_attempt=unanswered_attempt,
                    attempt_must_be_open=unanswered_attempt is not None,
                    reopen_failed_submit=True,
                    current=job,
                )
                break
            except JobConflict:
                now = self._jobs.get(job.job_id)
                if now is not None and now.awaits_result:
                    # Not finished by another delivery: the job changed under this one (its
                    # attempt answered meanwhile, the request id recorded). The video stored
                    # is still the job's, and another delivery may already count on it at the
                    # readable key: record it against the job as it is now, never delete it.
                    if unanswered_attempt not in now.open_attempts:
                        unanswered_attempt = None
                    job = now
                    continue
                # A concurrent delivery finished first. Of the same request, it wrote the same
                # key; of another request, this copy is an extra that the job does not keep.
                if now is None or now.item.get("output_key") != stored.key:
                    self._store.delete(stored.key)
                return self._duplicate(job, delivery, unanswered_attempt)
        else:
            raise JobStoreBusy("the job kept changing while its result was recorded")
        self._events.finished(completed)
        count(Metric.VIDEOS_COMPLETED)
        metrics.add_metric(name=Metric.VIDEO_BYTES, unit=MetricUnit.Bytes, value=stored.size)
        if generation_seconds is not None:
            metrics.add_metric(
                name=Metric.GENERATION_SECONDS, unit=MetricUnit.Seconds, value=generation_seconds
            )
        logger.info("Video stored", extra={"output_key": stored.key, "video_bytes": stored.size})
        return RecordOutcome.COMPLETED

    def _record_failure(
        self,
        job: Job,
        delivery: FalDelivery,
        unanswered_attempt: str | None,
        failure: tuple[ErrorCode, str],
    ) -> RecordOutcome:
        code, message = failure
        try:
            failed = self._jobs.transition(
                job.job_id,
                JobStatus.FAILED,
                attributes={"error_code": code, "error_message": message},
                add_request_id=delivery.request_id,
                close_attempt=unanswered_attempt,
                attempt_must_be_open=unanswered_attempt is not None,
                reopen_failed_submit=True,
                current=job,
            )
        except JobConflict:
            return self._duplicate(job, delivery, unanswered_attempt)
        self._events.finished(failed)
        if self._ledger is not None and result_refunds(delivery):
            # fal does not charge server errors (spend/refund_rules.py); a refund that cannot
            # be written now stays spent, the conservative side.
            try:
                self._ledger.refund(job.job_id, reason=f"fal server error: {delivery.error}")
            except Exception:
                logger.exception("Could not refund the reservation")
        logger.warning("The job failed", extra={"error_code": code})
        count(Metric.VIDEOS_FAILED, error_code=code)
        return RecordOutcome.FAILED

    def _duplicate(
        self, job: Job, delivery: FalDelivery, unanswered_attempt: str | None
    ) -> RecordOutcome:
        count(Metric.DUPLICATE_DELIVERIES)
        if unanswered_attempt and self._books_extra_request(job, delivery, unanswered_attempt):
            # A second paid request for one upload (the first call's answer was lost): the job
            # keeps the result it has; the id is booked so the spend is accounted for.
            logger.warning("A second fal result for a finished job; the job keeps its first")
            count(Metric.EXTRA_FAL_RESULTS)
        return RecordOutcome.DUPLICATE

    def _other_request_failed(
        self, job: Job, delivery: FalDelivery, unanswered_attempt: str | None
    ) -> RecordOutcome:
        """A failure of a request the job no longer waits on (an extra cancelled at fal, or the
        call whose answer was lost after another request was recorded): the job waits for its
        own request, which its webhook or the reconciler settles; the id is booked."""
        logger.warning(
            "A fal request the job does not wait on failed; the job waits for its own",
            extra={"error": delivery.error},
        )
        if unanswered_attempt:
            self._books_extra_request(job, delivery, unanswered_attempt)
        return RecordOutcome.DUPLICATE

    def _books_extra_request(self, job: Job, delivery: FalDelivery, attempt: str) -> bool:
        try:
            self._jobs.record_extra_request(job.job_id, delivery.request_id, attempt=attempt)
        except JobConflict:  # the attempt was answered meanwhile: a plain duplicate
            return False
        return True

    def _generation_seconds(self, job: Job) -> float | None:
        submitted = job.submitted_at
        if not submitted:
            return None
        return max(0.0, self._clock() - datetime.fromisoformat(submitted).timestamp())
