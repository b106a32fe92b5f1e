"""The reconciler: every open job ends in a final status, even when its webhook never comes.

It reads open jobs due for a check from the sparse ``OpenJobs`` index (never a scan), a bounded
number per run, and for each:
- a claim that ran out before fal's answer was recorded (a crashed submit, or an answer lost to
  a timeout) first looks for its request in fal's request history (reconcile/lost_answers.py):
  one found is adopted, as if its answer had come; only a claim fal never heard of is submitted
  again through the submit path, under the same exactly-once claim; when fal's history cannot
  be read, nothing is submitted until it can (or until the deadline's last try);
- a request fal finished is recorded through the webhook's own code (same checks, same streaming
  copy, same transitions and events);
- a request still queued or running is checked again later, until the deadline: then it is
  cancelled and the job EXPIRED; one an operator cancelled (``cancel_requested``) is cancelled
  at fal now and the job CANCELLED; a claim fal stays unavailable for past the deadline ends FAILED
  ``fal_unavailable``, as after a message's last attempt;
- a job that cannot be settled this time (its video cannot be stored yet, or an error) is checked
  again later, until the deadline: then it ends FAILED (``video_unavailable`` or
  ``reconcile_failed``), so no job stays open past the deadline for any reason.
Then it publishes again the events of final jobs the notifier never acknowledged
(jobs/event_outbox.py), so a kill or a failed PutEvents after a final write loses no webhook.
Each run reports the age of the oldest job it had to leave open (``OldestOpenJobSeconds``):
above the deadline, something keeps a job from ending, and an alarm says so.
Everything is a conditional transition, so running beside the webhook, or twice at once, is safe:
whoever records first wins and the other changes nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, assert_never

from aws_lambda_powertools.metrics import MetricUnit

from pika_pipeline.errors import (
    FalHistoryUnavailable,
    FalUnavailable,
    JobConflict,
    JobStoreBusy,
    VideoUnavailable,
)
from pika_pipeline.fal.pika import endpoint_of
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.event_outbox import EVENT_REPUBLISHED
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.observability import Metric, count, logger, metrics
from pika_pipeline.results.recorder import RecordOutcome
from pika_pipeline.submit.service import SubmitOutcome
from pika_pipeline.submit.uploads import Upload
from pika_pipeline.webhook.tokens import new_attempt

if TYPE_CHECKING:
    from pika_pipeline.batches.announcer import BatchAnnouncer
    from pika_pipeline.dispatch.dispatcher import Dispatcher
    from pika_pipeline.dispatch.queue_report import QueueReport
    from pika_pipeline.fal.gateway import FalGateway
    from pika_pipeline.jobs.event_outbox import EventOutbox
    from pika_pipeline.jobs.events import JobEvents
    from pika_pipeline.jobs.job import Job
    from pika_pipeline.jobs.open_jobs import OpenJobs
    from pika_pipeline.jobs.repository import JobRepository
    from pika_pipeline.reconcile.lost_answers import LostAnswers
    from pika_pipeline.results.recorder import ResultRecorder
    from pika_pipeline.submit.service import SubmitService


# After this many republishes the notifier is not merely slow: the mark goes, an error is logged
# and EventsNeverAcknowledged counted. With a 600 s grace, the last republish comes ~1.8 days
# after the job ended, and the mark goes ~3.5 days after it.
MAX_REPUBLISHES = 8
# The marks one run looks at: a republish is two small calls, far cheaper than settling a job.
REPUBLISH_PER_RUN = 200


class ReconcileOutcome(StrEnum):
    """What one check of an open job did; each run reports how many ended which way."""

    RECOVERED_COMPLETED = "recovered_completed"  # fal's result, recorded by the reconciler
    RECOVERED_FAILED = "recovered_failed"
    RECOVERED_DUPLICATE = "recovered_duplicate"  # the webhook recorded it first
    ADOPTED = "adopted"  # a crashed claim's request, found in fal's history
    RESUBMITTED_SUBMITTED = "resubmitted_submitted"  # a crashed claim, submitted again
    RESUBMITTED_FAILED = "resubmitted_failed"
    RESUBMITTED_REJECTED = "resubmitted_rejected"
    RESUBMITTED_DUPLICATE = "resubmitted_duplicate"  # another submit got there first
    GAVE_UP_FAL_UNAVAILABLE = "gave_up_fal_unavailable"  # the submit path recorded FAILED
    GAVE_UP_AT_DEADLINE = "gave_up_at_deadline"  # could not be settled before the deadline
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # an operator's `pika-pipeline cancel` of a job at fal
    ALREADY_FINAL = "already_final"
    STILL_RUNNING = "still_running"
    CLAIM_STILL_LIVE = "claim_still_live"
    RETRY_LATER = "retry_later"
    ERRORS = "errors"
    NOT_REACHED = "not_reached"


def is_recovery(outcome: ReconcileOutcome) -> bool:
    """Whether the reconciler itself moved the job on (JobsRecovered). An expiry has its own
    metric; a duplicate means the webhook or another run got there first."""
    match outcome:
        case (
            ReconcileOutcome.RECOVERED_COMPLETED
            | ReconcileOutcome.RECOVERED_FAILED
            | ReconcileOutcome.ADOPTED
            | ReconcileOutcome.RESUBMITTED_SUBMITTED
            | ReconcileOutcome.RESUBMITTED_FAILED
            | ReconcileOutcome.RESUBMITTED_REJECTED
        ):
            return True
        case (
            ReconcileOutcome.RECOVERED_DUPLICATE
            | ReconcileOutcome.RESUBMITTED_DUPLICATE
            | ReconcileOutcome.GAVE_UP_FAL_UNAVAILABLE
            | ReconcileOutcome.GAVE_UP_AT_DEADLINE
            | ReconcileOutcome.EXPIRED
            | ReconcileOutcome.CANCELLED
            | ReconcileOutcome.ALREADY_FINAL
            | ReconcileOutcome.STILL_RUNNING
            | ReconcileOutcome.CLAIM_STILL_LIVE
            | ReconcileOutcome.RETRY_LATER
            | ReconcileOutcome.ERRORS
            | ReconcileOutcome.NOT_REACHED
        ):
            return False
        case _:
            assert_never(outcome)


def leaves_open(outcome: ReconcileOutcome) -> bool:
    """Whether the job is still open after the check: the oldest such job is
    OldestOpenJobSeconds. Jobs settled in the run are not counted (an expiry already has its own
    alarm), so a value above the deadline means a job the reconciler cannot end (or could not
    reach in time), not one it just ended. A job submitted again is open, but its deadline
    starts anew."""
    match outcome:
        case (
            ReconcileOutcome.STILL_RUNNING
            | ReconcileOutcome.CLAIM_STILL_LIVE
            | ReconcileOutcome.RETRY_LATER
            | ReconcileOutcome.ERRORS
            | ReconcileOutcome.NOT_REACHED
        ):
            return True
        case (
            ReconcileOutcome.RECOVERED_COMPLETED
            | ReconcileOutcome.RECOVERED_FAILED
            | ReconcileOutcome.RECOVERED_DUPLICATE
            | ReconcileOutcome.ADOPTED
            | ReconcileOutcome.RESUBMITTED_SUBMITTED
            | ReconcileOutcome.RESUBMITTED_FAILED
            | ReconcileOutcome.RESUBMITTED_REJECTED
            | ReconcileOutcome.RESUBMITTED_DUPLICATE
            | ReconcileOutcome.GAVE_UP_FAL_UNAVAILABLE
            | ReconcileOutcome.GAVE_UP_AT_DEADLINE
            | ReconcileOutcome.EXPIRED
            | ReconcileOutcome.CANCELLED
            | ReconcileOutcome.ALREADY_FINAL
        ):
            return False
        case _:
            assert_never(outcome)


def deadline_started(item: Mapping[str, Any]) -> float | None:
    """When a job's deadline started (epoch seconds): its submission to fal, or for a claim that
    never reached fal its dispatch (a job may wait QUEUED for days: that never counts), or for
    an older claim its creation; None for a record with none of them."""
    for name in ("submitted_at", "dispatched_at", "created_at"):
        if value := item.get(name):
            return datetime.fromisoformat(str(value)).timestamp()
    return None


class Reconciler:
    def __init__(
        self,
        *,
        open_jobs: OpenJobs,
        repository: JobRepository,
        fal: Callable[[], FalGateway],
        recorder: ResultRecorder,
        submit: SubmitService,
        events: JobEvents,
        reconcile_after_seconds: int,
        job_deadline_seconds: int,
        dispatcher: Dispatcher | None = None,
        queue_report: QueueReport | None = None,
        batches: BatchAnnouncer | None = None,
        outbox: EventOutbox | None = None,
        event_grace_seconds: int = 600,
        lost_answers: LostAnswers | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lost_answers = lost_answers
        self._batches = batches
        self._outbox = outbox
        self._event_grace_seconds = event_grace_seconds
        self._dispatcher = dispatcher
        self._queue_report = queue_report
        self._open_jobs = open_jobs
        self._jobs = repository
        self._fal = fal
        self._recorder = recorder
        self._submit = submit
        self._events = events
        self._reconcile_after_seconds = reconcile_after_seconds
        self._deadline_seconds = job_deadline_seconds
        self._clock = clock

    def run(
        self, *, reconcile_batch_size: int, out_of_time: Callable[[], bool] = lambda: False
    ) -> dict[str, int]:
        """Checks at most ``reconcile_batch_size`` due jobs, oldest first; returns how many ended
        which way.

        Jobs left over (too many, or the function running out of time) stay due: the next run
        resumes with them, and jobs checked but still running have moved to the back.
        """
        report: Counter[ReconcileOutcome] = Counter()
        oldest_open = 0.0
        due = self._open_jobs.due(now_epoch=int(self._clock()), limit=reconcile_batch_size)
        for index, job in enumerate(due):
            outcome = ReconcileOutcome.NOT_REACHED if out_of_time() else self._settle(job)
            if outcome is ReconcileOutcome.NOT_REACHED:
                # Stopped early: this job and the rest stay due for the next run.
                left = due[index:]
                report[outcome] += len(left)
                oldest_open = max([oldest_open, *(self._age(j) for j in left)])
                break
            report[outcome] += 1
            if is_recovery(outcome):
                count(Metric.JOBS_RECOVERED, outcome=outcome)
            if leaves_open(outcome):
                oldest_open = max(oldest_open, self._age(job))
        metrics.add_metric(
            name=Metric.OLDEST_OPEN_JOB_SECONDS, unit=MetricUnit.Seconds, value=round(oldest_open)
        )
        logger.thread_safe_clear_keys()  # the summary is about the run, not its last job
        for outcome, number in report.items():
            logger.info("Reconciled", extra={"outcome": outcome, "jobs": number})
        answer = {str(outcome): number for outcome, number in report.items()}
        answer.update(self._dispatch(out_of_time))
        answer.update(self._announce_batches(out_of_time))
        answer.update(self._republish_events(out_of_time))
        return answer

    def _republish_events(self, out_of_time: Callable[[], bool]) -> dict[str, int]:
        """Publishes again the events of final jobs the notifier has not acknowledged within
        the grace, each time waiting twice as long for its acknowledgement."""
        if self._outbox is None:
            return {}
        now = int(self._clock())
        try:
            due = self._outbox.due(
                before_epoch=now - self._event_grace_seconds, limit=REPUBLISH_PER_RUN
            )
        except Exception:
            logger.exception("Reading the events due failed; the next run tries again")
            count(Metric.RECONCILE_ERRORS)
            return {}
        republished = 0
        for job in due:
            if out_of_time():
                break  # the rest stay due for the next run
            logger.thread_safe_clear_keys()
            logger.thread_safe_append_keys(job_id=job.job_id, status=job.item.get("status"))
            try:
                republished += self._republish(self._outbox, job, now)
            except Exception:
                logger.exception("Republishing the job's event failed; the next run tries again")
                count(Metric.RECONCILE_ERRORS)
        logger.thread_safe_clear_keys()
        return {"events_republished": republished} if republished else {}

    def _republish(self, outbox: EventOutbox, job: Job, now: int) -> bool:
        times = int(job.item.get(EVENT_REPUBLISHED, 0))
        try:
            if times >= MAX_REPUBLISHES:
                outbox.abandon(job)
                logger.error(
                    "The job's event was never acknowledged; its webhook may be lost",
                    extra={"republished": times},
                )
                count(Metric.EVENTS_NEVER_ACKNOWLEDGED)
                return False
            # Taken before publishing, so two runs never both publish it; a crash in between
            # only delays it to the next due time.
            fresh = outbox.postpone(
                job, until_epoch=now + self._event_grace_seconds * (2 ** (times + 1) - 1)
            )
        except JobConflict:
            return False  # acknowledged, or finished anew, meanwhile
        if not self._events.finished(fresh):
            return False  # logged and counted; due again after its delay
        logger.info("Republished the job's event", extra={"republished": times + 1})
        count(Metric.EVENTS_REPUBLISHED)
        return True

    def _announce_batches(self, out_of_time: Callable[[], bool]) -> dict[str, int]:
        """Batch Completed for the batches that finished: after the jobs, so a batch whose last
        job this run settled is announced in the same run."""
        if self._batches is None:
            return {}
        try:
            announced = self._batches.announce_finished(out_of_time)
        except Exception:
            logger.exception("Announcing finished batches failed; the next run tries again")
            count(Metric.RECONCILE_ERRORS)
            return {}
        return {"batches_completed": announced} if announced else {}

    def _dispatch(self, out_of_time: Callable[[], bool]) -> dict[str, int]:
        """The safety net of the event-driven dispatch: a slot whose nudge was lost is idle at
        most one reconciler period. Then the queue's gauges and the waiting jobs' positions."""
        done: dict[str, int] = {}
        try:
            if self._dispatcher is not None:
                done["dispatched"] = self._dispatcher.fill()
            if self._queue_report is not None:
                done["queued"] = int(self._queue_report.refresh(out_of_time)["queued"])
        except Exception:
            logger.exception("Dispatch or the queue report failed; the next run tries again")
            count(Metric.RECONCILE_ERRORS)
        return done

    def _settle(self, job: Job) -> ReconcileOutcome:
        logger.thread_safe_clear_keys()
        logger.thread_safe_append_keys(job_id=job.job_id, object_key=job.item.get("source_key"))
        try:
            return self._reconcile(job)
        except (FalUnavailable, VideoUnavailable, JobStoreBusy) as exc:
            logger.warning("Could not settle the job this time", extra={"reason": str(exc)})
            code = (
                ErrorCode.VIDEO_UNAVAILABLE
                if isinstance(exc, VideoUnavailable)
                else ErrorCode.FAL_UNAVAILABLE
                if isinstance(exc, FalUnavailable)
                else ErrorCode.RECONCILE_FAILED  # the jobs table stayed busy
            )
            return self._later_or_give_up(job, code, str(exc), ReconcileOutcome.RETRY_LATER)
        except Exception as exc:
            # One bad job must not stop the run: it is logged, counted, and looked at again
            # later, until its deadline.
            logger.exception("Reconciling the job failed")
            count(Metric.RECONCILE_ERRORS)
            return self._later_or_give_up(
                job,
                ErrorCode.RECONCILE_FAILED,
                f"the reconciler could not settle the job: {type(exc).__name__}",
                ReconcileOutcome.ERRORS,
            )

    def _later_or_give_up(
        self, job: Job, code: ErrorCode, message: str, later: ReconcileOutcome
    ) -> ReconcileOutcome:
        """Checks the job again later, unless its deadline has passed: then it ends FAILED."""
        if not self._past_deadline(job):
            self._check_later(job)
            return later
        try:
            return self._give_up(job, code, message)
        except Exception:
            logger.exception("Could not end the job at its deadline")
            count(Metric.RECONCILE_ERRORS)
            self._check_later(job)
            return ReconcileOutcome.ERRORS

    def _give_up(self, job: Job, code: ErrorCode, message: str) -> ReconcileOutcome:
        fresh = self._jobs.get(job.job_id)
        if fresh is None or fresh.status not in (JobStatus.PENDING, JobStatus.SUBMITTED):
            return ReconcileOutcome.ALREADY_FINAL
        request_id = fresh.item.get("request_id")
        if request_id:
            try:
                # Nothing more is wanted from fal: a request still running costs money.
                self._fal().cancel(str(request_id), endpoint=endpoint_of(fresh.item))
            except Exception as exc:
                logger.warning("Could not cancel the request", extra={"reason": str(exc)})
        try:
            failed = self._jobs.transition(
                fresh.job_id,
                JobStatus.FAILED,
                attributes={
                    "error_code": code,
                    "error_message": f"not settled within {self._deadline_seconds} s: {message}",
                },
                current=fresh,
            )
        except JobConflict:
            return ReconcileOutcome.ALREADY_FINAL
        self._events.finished(failed)
        logger.warning("The job ended at its deadline", extra={"error_code": code})
        count(Metric.JOBS_GIVEN_UP, error_code=code)
        return ReconcileOutcome.GAVE_UP_AT_DEADLINE

    def _age(self, job: Job) -> float:
        started = deadline_started(job.item)
        return 0.0 if started is None else max(0.0, self._clock() - started)

    def _reconcile(self, job: Job) -> ReconcileOutcome:
        fresh = self._jobs.get(job.job_id)  # the index is eventually consistent; the table is not
        if fresh is None or fresh.status not in (JobStatus.PENDING, JobStatus.SUBMITTED):
            return ReconcileOutcome.ALREADY_FINAL
        if fresh.item.get("cancel_requested"):
            return self._cancel(fresh)
        request_id = fresh.item.get("request_id")
        if not request_id:
            return self._resubmit(fresh)
        logger.thread_safe_append_keys(fal_request_id=request_id)
        try:
            delivery = self._fal().outcome(str(request_id), endpoint=endpoint_of(fresh.item))
        except FalUnavailable:
            # fal cannot say (an outage, or a request it no longer knows): past the deadline
            # that is as final as a request that never finished.
            if self._past_deadline(fresh):
                return self._expire(fresh, str(request_id))
            raise
        if delivery is None:
            return self._still_running(fresh, str(request_id))
        return _recovered(self._recorder.record(fresh, delivery))

    def _check_later(self, job: Job) -> None:
        self._reschedule(job, int(self._clock()) + self._reconcile_after_seconds)

    def _reschedule(self, job: Job, when_epoch: int) -> None:
        try:
            self._open_jobs.check_again_at(job.job_id, when_epoch)
        except JobConflict:
            pass  # finished meanwhile: nothing to reschedule
        except JobStoreBusy as exc:
            # It stays due where it is: the next run looks at it again.
            logger.warning("Could not reschedule the job", extra={"reason": str(exc)})

    def _resubmit(self, job: Job) -> ReconcileOutcome:
        if int(job.item.get("claim_expires_at", 0)) > self._clock():
            self._reschedule(job, int(job.item["claim_expires_at"]))
            return ReconcileOutcome.CLAIM_STILL_LIVE
        # Past the deadline this is the last try, as a message's last receive is: if fal is still
        # unavailable the submit path records FAILED fal_unavailable (not EXPIRED: no request
        # reached fal, nothing needs cancelling, and a re-drive or `retry` may start it again).
        last_try = self._past_deadline(job)
        found = self._lost_requests(job, last_try=last_try)
        if found is None:
            self._check_later(job)
            return ReconcileOutcome.RETRY_LATER
        if found:
            return self._adopt(job, found)
        upload = Upload.of_job(job.item)
        try:
            outcome = self._submit.resubmit(upload, final_attempt=last_try)
        except FalUnavailable:
            if not last_try:
                raise
            return ReconcileOutcome.GAVE_UP_FAL_UNAVAILABLE
        return _resubmitted(outcome)

    def _lost_requests(self, job: Job, *, last_try: bool) -> list[str] | None:
        """The claim's requests fal received although their answers were lost, earliest first;
        None when fal's history cannot say and the job may wait for the next run."""
        if self._lost_answers is None:
            return []
        try:
            return self._lost_answers.find(job)
        except FalHistoryUnavailable as exc:
            count(Metric.FAL_HISTORY_UNAVAILABLE)
            if last_try:
                logger.warning(
                    "fal's request history cannot be read; past the deadline, submitting again",
                    extra={"reason": str(exc)},
                )
                return []
            logger.warning(
                "fal's request history cannot be read; not submitting again this run",
                extra={"reason": str(exc)},
            )
            return None

    def _adopt(self, job: Job, request_ids: list[str]) -> ReconcileOutcome:
        """Records the earliest request as the claim's answer (SUBMITTED: its webhook, or a later
        status check, finishes the job); any later ones are booked and cancelled at fal."""
        # fal's history does not say which attempt made a request (the attempt is in the webhook
        # URL, not the input): one open attempt is closed; the webhook accepts the adopted
        # request by its recorded id whichever attempt's URL it comes to.
        attempt = min(job.open_attempts, default=None) or new_attempt()
        adopted, *extras = request_ids
        logger.thread_safe_append_keys(fal_request_id=adopted)
        try:
            self._jobs.record_request_id(job.job_id, adopted, attempt=attempt)
        except JobConflict:
            return ReconcileOutcome.ALREADY_FINAL  # deleted meanwhile
        for extra in extras:
            logger.warning("fal holds a second request for the claim; cancelling it")
            count(Metric.EXTRA_FAL_RESULTS)
            with contextlib.suppress(JobConflict):
                self._jobs.record_extra_request(job.job_id, extra, attempt=None)
            try:
                self._fal().cancel(extra, endpoint=endpoint_of(job.item))
            except Exception as exc:
                logger.warning("Could not cancel the request", extra={"reason": str(exc)})
        logger.info("Adopted the request fal received for the crashed claim")
        self._check_later(job)  # as after a submit: its webhook has a period to come first
        return ReconcileOutcome.ADOPTED

    def _past_deadline(self, job: Job) -> bool:
        started = deadline_started(job.item)
        return started is not None and self._clock() - started >= self._deadline_seconds

    def _still_running(self, job: Job, request_id: str) -> ReconcileOutcome:
        if not self._past_deadline(job):
            self._check_later(job)
            return ReconcileOutcome.STILL_RUNNING
        return self._expire(job, request_id)

    def _cancel(self, job: Job) -> ReconcileOutcome:
        """An operator cancelled a job at fal (``pika-pipeline cancel``; the CLI holds no fal key,
        so it asks here): cancel the fal request, as an expiry does, and end the job CANCELLED.

        A claim still live may be submitting this very moment: cancelling now would leave the
        request it is about to make running and paid for. It is cancelled once the claim has
        an answer (the request id is then known) or has run out (the submit crashed).
        """
        request_id = job.item.get("request_id")
        if not request_id and int(job.item.get("claim_expires_at", 0)) > self._clock():
            self._reschedule(job, int(job.item["claim_expires_at"]))
            return ReconcileOutcome.CLAIM_STILL_LIVE
        if request_id:
            # Raises FalUnavailable: looked at again later; past the deadline it expires.
            self._fal().cancel(str(request_id), endpoint=endpoint_of(job.item))
        by = job.item.get("cancel_requested_by") or "an operator"
        try:
            cancelled = self._jobs.transition(
                job.job_id,
                JobStatus.CANCELLED,
                attributes={
                    "error_code": ErrorCode.CANCELLED,
                    "error_message": f"cancelled by {by}"
                    + ("; the fal request was cancelled" if request_id else " before fal answered"),
                },
                current=job,
            )
        except JobConflict:
            return ReconcileOutcome.ALREADY_FINAL
        self._events.finished(cancelled)
        logger.info("Cancelled at an operator's request", extra={"cancelled_by": by})
        return ReconcileOutcome.CANCELLED

    def _expire(self, job: Job, request_id: str) -> ReconcileOutcome:
        self._fal().cancel(request_id, endpoint=endpoint_of(job.item))
        try:
            expired = self._jobs.transition(
                job.job_id,
                JobStatus.EXPIRED,
                attributes={
                    "error_code": ErrorCode.FAL_DEADLINE,
                    "error_message": f"fal did not finish within {self._deadline_seconds} s; "
                    "the request was cancelled",
                },
                current=job,
            )
        except JobConflict:
            return ReconcileOutcome.ALREADY_FINAL
        self._events.finished(expired)
        count(Metric.JOBS_EXPIRED)
        return ReconcileOutcome.EXPIRED


def _recovered(outcome: RecordOutcome) -> ReconcileOutcome:
    match outcome:
        case RecordOutcome.COMPLETED:
            return ReconcileOutcome.RECOVERED_COMPLETED
        case RecordOutcome.FAILED:
            return ReconcileOutcome.RECOVERED_FAILED
        case RecordOutcome.DUPLICATE:
            return ReconcileOutcome.RECOVERED_DUPLICATE
        case _:
            assert_never(outcome)


def _resubmitted(outcome: SubmitOutcome) -> ReconcileOutcome:
    match outcome:
        case SubmitOutcome.SUBMITTED:
            return ReconcileOutcome.RESUBMITTED_SUBMITTED
        case SubmitOutcome.FAILED:
            return ReconcileOutcome.RESUBMITTED_FAILED
        case SubmitOutcome.REJECTED:
            return ReconcileOutcome.RESUBMITTED_REJECTED
        case SubmitOutcome.DUPLICATE:
            return ReconcileOutcome.RESUBMITTED_DUPLICATE
        case SubmitOutcome.IGNORED | SubmitOutcome.QUEUED:
            # resubmit() rejects an upload it no longer watches rather than ignore it, and
            # submits the claim it takes over (it already holds a slot) rather than queue it.
            raise AssertionError("a resubmit is never ignored nor queued")
        case _:
            assert_never(outcome)
