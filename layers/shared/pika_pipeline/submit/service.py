"""The submit path: one upload event becomes exactly one waiting job (QUEUED), or a recorded
rejection; a dispatched job becomes exactly one paid fal request (``submit_claimed``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from pika_pipeline.errors import (
    FalRequestFailed,
    FalUnavailable,
    JobConflict,
    MalformedMessage,
    UploadRejected,
)
from pika_pipeline.fal.pika import endpoint_of
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.job import plain
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.observability import Metric, count, logger, metrics
from pika_pipeline.spend.refund_rules import refused_submit_refunds, unavailable_submit_refunds
from pika_pipeline.submit.image_check import image_type
from pika_pipeline.submit.uploads import Upload, uploads_from_message
from pika_pipeline.webhook.tokens import expiry_for, new_attempt, webhook_url_for

if TYPE_CHECKING:
    from pika_pipeline.config.submit import SubmitServiceSettings
    from pika_pipeline.dispatch.order import FairShare
    from pika_pipeline.fal.gateway import FalGateway
    from pika_pipeline.jobs.events import JobEvents
    from pika_pipeline.jobs.job import Job
    from pika_pipeline.jobs.repository import JobRepository
    from pika_pipeline.spend.ledger import SpendLedger
    from pika_pipeline.submit.input_objects import InputObject, InputObjects
    from pika_pipeline.submit.video_request import VideoRequest


class SubmitOutcome(StrEnum):
    QUEUED = "queued"  # waiting for a dispatch slot
    SUBMITTED = "submitted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    FAILED = "failed"
    IGNORED = "ignored"


class SubmitService:
    def __init__(
        self,
        *,
        settings: SubmitServiceSettings,
        repository: JobRepository,
        images: InputObjects,
        fal: Callable[[], FalGateway],
        token_key: Callable[[], str],
        events: JobEvents,
        fair_share: FairShare,
        clock: Callable[[], float] = time.time,
        ledger: SpendLedger | None = None,
    ) -> None:
        self._ledger = ledger
        self._settings = settings
        self._fair_share = fair_share
        self._events = events
        self._jobs = repository
        self._images = images
        self._fal = fal
        self._token_key = token_key
        self._clock = clock

    def process_message(self, body: str, *, final_attempt: bool = False) -> list[SubmitOutcome]:
        """Processes every upload a queue message names.

        Raises MalformedMessage or FalUnavailable to fail the message, so SQS delivers it again
        (and, after the queue's receive limit, to the dead-letter queue). On the final attempt a
        job fal never accepted is recorded as FAILED ``fal_unavailable`` before giving up.
        """
        try:
            uploads = uploads_from_message(body)
        except MalformedMessage as exc:
            logger.error("Malformed message", extra={"reason": str(exc)})
            count(Metric.MALFORMED_MESSAGES)
            raise
        return [self.process_upload(upload, final_attempt=final_attempt) for upload in uploads]

    def process_upload(self, upload: Upload, *, final_attempt: bool = False) -> SubmitOutcome:
        if not self._is_watched(upload):
            logger.info(
                "Ignoring an object outside the input prefix",
                extra={"bucket": upload.bucket, "object_key": upload.key},
            )
            return SubmitOutcome.IGNORED
        count(Metric.UPLOADS_RECEIVED)
        job_id = job_id_for(bucket=upload.bucket, key=upload.key, version=upload.version)
        logger.thread_safe_append_keys(job_id=job_id, object_key=upload.key)
        source = {
            "job_id": job_id,
            "source_bucket": upload.bucket,
            "source_key": upload.key,
            "source_version": upload.version,
        }
        if upload.s3_version_id:
            source["source_version_id"] = upload.s3_version_id
        if upload.sequencer:  # orders re-uploads of one key (results/video_keys.UploadOrder)
            source["source_sequencer"] = upload.sequencer
        try:
            request, lane, batch, extra = self._read_upload(upload)
        except UploadRejected as rejection:
            return self._reject(source, rejection)
        return self._enqueue(
            {
                **source,
                **_request_attributes(request),
                **self._endpoint_and_price(request),
                **extra,
                "priority": lane,
                "batch": batch,
            },
            lane=lane,
            batch=batch,
        )

    def _enqueue(self, item: dict[str, Any], *, lane: str, batch: str) -> SubmitOutcome:
        from pika_pipeline.dispatch.control import iso
        from pika_pipeline.dispatch.order import queue_order

        queued_at = iso(self._clock())
        job_id = str(item["job_id"])
        try:
            # A duplicate event spends a rank of its batch: harmless, ranks only order.
            rank = self._fair_share.next_rank(lane, batch)
            self._jobs.enqueue(
                item, lane=lane, order=queue_order(rank, queued_at, job_id), queued_at=queued_at
            )
        except JobConflict:
            logger.info("Upload already has a job; not queueing it again")
            count(Metric.DUPLICATE_UPLOADS)
            return SubmitOutcome.DUPLICATE
        logger.info("Queued", extra={"priority": lane, "batch": batch})
        return SubmitOutcome.QUEUED

    def submit_claimed(
        self,
        *,
        job_id: str,
        upload: Upload,
        request: VideoRequest,
        attempt: str,
        started: float,
        endpoint: str,
        final_attempt: bool = False,
    ) -> SubmitOutcome:
        """The second half of the submit path, for a job claimed PENDING under ``attempt`` (a
        dispatch, or the reconciler's take-over of a crashed one): presigns the image now (the
        URL's clock starts at dispatch), submits to fal at ``endpoint`` (the one the job recorded
        when it was queued, and priced at) and records the request id (SUBMITTED), or records
        FAILED. Raises FalUnavailable after releasing the claim, for a retry later.
        """
        image_url = self._images.presigned_url(upload)
        webhook_url = webhook_url_for(
            self._settings.webhook_url,
            job_id,
            attempt,
            self._token_key(),
            expires_at=expiry_for(started, self._settings.job_deadline_seconds),
        )
        try:
            request_id = self._fal().submit(
                request.fal_arguments(image_url), webhook_url=webhook_url, endpoint=endpoint
            )
        except FalRequestFailed as failure:
            count(Metric.FAL_ERRORS, error_type=failure.code)
            logger.warning("fal refused the request", extra={"error_code": failure.code})
            # fal queued nothing for this call: its URL must not complete the job later (anyone
            # who saw it could make a request of their own with it).
            self._fail(job_id, failure.code, failure.message, close_attempt=attempt)
            if refused_submit_refunds(failure):
                self._refund(job_id, f"fal refused the submit: {failure.code}")
            return SubmitOutcome.FAILED
        except FalUnavailable as exc:
            count(Metric.FAL_ERRORS, error_type=exc.kind)
            # A webhook that beat the failed call has moved the job on: nothing to release.
            # It keeps its slot: due for the reconciler at once, its next run submits it again
            # (a slot is idle at most one reconciler period, as after a lost event).
            with contextlib.suppress(JobConflict):
                self._jobs.release_claim(
                    job_id, attempts_error=str(exc), check_at=int(self._clock())
                )
            if final_attempt:
                logger.error("fal stayed unavailable; giving up", extra={"reason": str(exc)})
                self._fail(job_id, ErrorCode.FAL_UNAVAILABLE, f"{exc} (after every attempt)")
                if unavailable_submit_refunds(exc):
                    self._refund(job_id, f"fal never accepted the submit: {exc.kind}")
            else:
                logger.warning(
                    "fal unavailable; the job will be submitted again",
                    extra={"reason": str(exc)},
                )
            raise

        logger.thread_safe_append_keys(fal_request_id=request_id)
        try:
            self._jobs.record_request_id(job_id, request_id, attempt=attempt)
        except JobConflict:
            # Deleted meanwhile (retention, or by hand): fal has the request all the same, and
            # retrying would pay for a second one.
            logger.warning("The job no longer exists; fal's request id is not recorded")
        count(Metric.JOBS_SUBMITTED)
        metrics.add_metric(
            name=Metric.SUBMIT_LATENCY,
            unit=MetricUnit.Milliseconds,
            value=(self._clock() - started) * 1000,
        )
        logger.info("Submitted to fal")
        return SubmitOutcome.SUBMITTED

    def dispatched(self, job: Job, *, attempt: str, started: float) -> SubmitOutcome:
        """Submits a job the dispatcher just claimed, from what its record holds: the metadata
        was validated when it was queued, so nothing is read from S3 again."""
        from pika_pipeline.submit.video_request import VideoRequest

        request = VideoRequest.model_validate(
            {name: plain(job.item[name]) for name in VideoRequest.model_fields if name in job.item}
        )
        logger.thread_safe_clear_keys()  # nothing of the job dispatched before it
        logger.thread_safe_append_keys(
            job_id=job.job_id, object_key=str(job.item.get("source_key", ""))
        )
        return self.submit_claimed(
            job_id=job.job_id,
            upload=Upload.of_job(job.item),
            request=request,
            attempt=attempt,
            started=started,
            endpoint=endpoint_of(job.item),
        )

    def resubmit(self, upload: Upload, *, final_attempt: bool = False) -> SubmitOutcome:
        """Submits the upload of a dispatched claim whose submit crashed (the reconciler's path);
        the job keeps the slot it holds.

        The upload is read again: one that became unusable meanwhile (deleted, or no longer
        under ``InputPrefix``) is rejected, as its claim would otherwise stay open forever."""
        job_id = job_id_for(bucket=upload.bucket, key=upload.key, version=upload.version)
        logger.thread_safe_append_keys(job_id=job_id, object_key=upload.key)
        if not self._is_watched(upload):
            rejection = UploadRejected(
                ErrorCode.OUTSIDE_INPUT_PREFIX,
                "The upload is no longer under the input prefix (InputPrefix changed after it "
                "was claimed); nothing was submitted.",
            )
            return self._reject_stranded(job_id, rejection)
        try:
            request, *_ = self._read_upload(upload)
        except UploadRejected as rejection:
            return self._reject_stranded(job_id, rejection)
        started = self._clock()
        attempt = new_attempt()
        try:
            claimed = self._jobs.reclaim(
                job_id,
                attempt=attempt,
                now_epoch=int(started),
                claim_seconds=self._settings.submit_claim_seconds,
                reconcile_after_seconds=self._settings.reconcile_after_seconds,
            )
        except JobConflict:
            logger.info("The claim is live or already answered; not submitting again")
            return SubmitOutcome.DUPLICATE
        return self.submit_claimed(
            job_id=job_id,
            upload=upload,
            request=request,
            attempt=attempt,
            started=started,
            endpoint=endpoint_of(claimed.item),
            final_attempt=final_attempt,
        )

    def _refund(self, job_id: str, reason: str) -> None:
        """Gives the job's reservation back (spend/refund_rules.py says when); a refund that
        cannot be written now stays spent, the conservative side."""
        if self._ledger is None:
            return
        try:
            self._ledger.refund(job_id, reason=reason)
        except Exception:
            logger.exception("Could not refund the reservation", extra={"job_id": job_id})

    def _is_watched(self, upload: Upload) -> bool:
        return upload.bucket != self._settings.output_bucket and upload.key.startswith(
            self._settings.input_prefix
        )

    def _read_upload(self, upload: Upload) -> tuple[VideoRequest, str, str, dict[str, str]]:
        """The request, its priority lane, its batch and the job's other attributes from the
        metadata (``callback_url``, ``correlation_id``, each when given); raises UploadRejected."""
        # pydantic loads with the first upload read, not at init: a cold start whose events are
        # all ignored or malformed never needs it, nor does an idle reconciler run.
        from pika_pipeline.dispatch.order import batch_of
        from pika_pipeline.submit.video_request import decode_metadata_value

        inspected = self._images.inspect(upload)
        given_batch = inspected.metadata.get("batch")
        batch = batch_of(
            upload.key,
            input_prefix=self._settings.input_prefix,
            metadata_batch=decode_metadata_value(given_batch).strip() if given_batch else None,
        )
        try:
            return self._read_request(upload, inspected, batch)
        except UploadRejected as rejection:
            # Known by now: the rejection counts in the batch's progress.
            rejection.batch = batch
            raise

    def _read_request(
        self, upload: Upload, inspected: InputObject, batch: str
    ) -> tuple[VideoRequest, str, str, dict[str, str]]:
        from pika_pipeline.notify.callbacks import callback_url_from_metadata
        from pika_pipeline.submit.video_request import (
            correlation_id_from_metadata,
            priority_from_metadata,
            video_request_from_metadata,
        )

        request = video_request_from_metadata(
            inspected.metadata,
            default_resolution=self._settings.default_resolution,
            default_duration=self._settings.default_duration,
            min_duration_seconds=self._settings.min_duration_seconds,
            max_duration_seconds=self._settings.max_duration_seconds,
            endpoint=self._settings.fal_endpoint,
        )
        if inspected.size > self._settings.max_image_bytes:
            raise UploadRejected(
                ErrorCode.IMAGE_TOO_LARGE,
                f"The image is {inspected.size} bytes; at most "
                f"{self._settings.max_image_bytes} are accepted.",
            )
        if image_type(inspected.head) is None:
            raise UploadRejected(
                ErrorCode.UNSUPPORTED_IMAGE_TYPE,
                "The object is not a PNG, JPEG or WebP image (checked by its first bytes).",
            )
        callback = callback_url_from_metadata(
            inspected.metadata, allowed_hosts=self._settings.callback_hosts
        )
        lane = priority_from_metadata(inspected.metadata)
        correlation_id = correlation_id_from_metadata(inspected.metadata)
        extra = {"callback_url": callback, "correlation_id": correlation_id}
        return request, lane, batch, {name: value for name, value in extra.items() if value}

    def _endpoint_and_price(self, request: VideoRequest) -> dict[str, Any]:
        """Where the job is sent and what it costs there: the reconciler asks fal about the job at
        this endpoint even after FalEndpoint changed, and spend is counted at this price."""
        return {
            "fal_endpoint": self._settings.fal_endpoint,
            "price_usd": self._settings.price_usd(
                resolution=request.resolution, duration=request.duration
            ),
        }

    def _reject(self, source: dict[str, Any], rejection: UploadRejected) -> SubmitOutcome:
        item = {**source, "error_code": rejection.code, "error_message": rejection.message}
        if rejection.batch is not None:
            item["batch"] = rejection.batch
        try:
            recorded = self._jobs.record_rejection(item)
        except JobConflict:
            # The upload has a job already. If its submit crashed before calling fal, the job
            # would wait forever for an image that is now unusable: end it here.
            return self._reject_stranded(str(source["job_id"]), rejection)
        return self._rejected(recorded, rejection)

    def _reject_stranded(self, job_id: str, rejection: UploadRejected) -> SubmitOutcome:
        try:
            stranded = self._jobs.reject_stranded(
                job_id, now_epoch=int(self._clock()), code=rejection.code, message=rejection.message
            )
        except JobConflict:  # a live claim, or a job that reached fal: not ours to end
            return SubmitOutcome.DUPLICATE
        return self._rejected(stranded, rejection)

    def _rejected(self, recorded: Job | dict[str, Any], rejection: UploadRejected) -> SubmitOutcome:
        self._events.finished(recorded)
        logger.warning(
            "Upload rejected",
            extra={"error_code": rejection.code, "error_message": rejection.message},
        )
        count(Metric.JOBS_REJECTED, error_code=rejection.code)
        return SubmitOutcome.REJECTED

    def _fail(
        self, job_id: str, code: ErrorCode, message: str, *, close_attempt: str | None = None
    ) -> None:
        try:
            job = self._jobs.transition(
                job_id,
                JobStatus.FAILED,
                attributes={"error_code": code, "error_message": message},
                close_attempt=close_attempt,
            )
        except JobConflict:
            logger.info("Job already moved on; leaving it as it is")
            return
        self._events.finished(job)
        # The same count (and breakdown) as a video fal failed: FailedVideosAlarm sees both.
        count(Metric.VIDEOS_FAILED, error_code=code)


def _request_attributes(request: VideoRequest) -> dict[str, Any]:
    return {
        name: value
        for name, value in request.model_dump().items()
        if value is not None and value != ""
    }
