"""The reconciler: every open job ends in a final status, even when its webhook never comes.

It reads open jobs due for a check from the sparse ``OpenJobs`` index (never a scan), a bounded
number per run, and for each:
- a claim that ran out before fal was called (a crashed submit) is submitted again through the
  submit path, under the same exactly-once claim;
- a request fal finished is recorded through the webhook's own code (same checks, same streaming
  copy, same transitions and events);
- a request still queued or running is checked again later, until the deadline: then it is
  cancelled and the job EXPIRED; a claim fal stays unavailable for past the deadline ends FAILED
  ``fal_unavailable``, as after a message's last attempt.
Each run reports the age of the oldest job it had to leave open (``OldestOpenJobSeconds``):
above the deadline, something keeps a job from ending, and an alarm says so.
Everything is a conditional transition, so running beside the webhook, or twice at once, is safe:
whoever records first wins and the other changes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from pika_pipeline.errors import FalUnavailable, JobConflict, VideoUnavailable
from pika_pipeline.jobs import ErrorCode, JobStatus
from pika_pipeline.observability import count, logger, metrics
from pika_pipeline.uploads import Upload

if TYPE_CHECKING:
    from pika_pipeline.fal_gateway import FalGateway
    from pika_pipeline.job_events import JobEvents
    from pika_pipeline.job_repository import Job, JobRepository, OpenJobs
    from pika_pipeline.job_results import JobResults
    from pika_pipeline.submit_service import SubmitService

# Outcomes in which the reconciler itself moved the job on (JobsRecovered). A duplicate means the
# webhook or another run got there first; "already_final" and the rest changed nothing.
RECOVERIES = frozenset(
    {
        "recovered_completed",
        "recovered_failed",
        "resubmitted_submitted",
        "resubmitted_failed",
        "resubmitted_rejected",
    }
)
# Outcomes that leave the job open: the oldest of them is OldestOpenJobSeconds. Jobs settled
# in the run are not counted (an expiry already has its own alarm), so a value above the deadline
# means a job the reconciler cannot end (or could not reach in time), not one it just ended.
LEFT_OPEN = frozenset({"still_running", "claim_still_live", "retry_later", "errors", "not_reached"})


def deadline_started(item: Mapping[str, Any]) -> float | None:
    """When a job's deadline started (epoch seconds): its submission to fal, or for a claim that
    never reached fal its creation; None for a record with neither."""
    for name in ("submitted_at", "created_at"):
        if value := item.get(name):
            return datetime.fromisoformat(str(value)).timestamp()
    return None


def is_recovery(outcome: str) -> bool:
    return outcome in RECOVERIES


class Reconciler:
    def __init__(
        self,
        *,
        open_jobs: OpenJobs,
        repository: JobRepository,
        fal: Callable[[], FalGateway],
        results: JobResults,
        submit: SubmitService,
        events: JobEvents,
        recheck_seconds: int,
        deadline_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._open_jobs = open_jobs
        self._jobs = repository
        self._fal = fal
        self._results = results
        self._submit = submit
        self._events = events
        self._recheck_seconds = recheck_seconds
        self._deadline_seconds = deadline_seconds
        self._clock = clock

    def run(
        self, *, max_jobs: int, out_of_time: Callable[[], bool] = lambda: False
    ) -> dict[str, int]:
        """Checks at most ``max_jobs`` due jobs, oldest first; returns how many ended which way.

        Jobs left over (too many, or the function running out of time) stay due: the next run
        resumes with them, and jobs checked but still running have moved to the back.
        """
        report: Counter[str] = Counter()
        oldest_open = 0.0
        due = self._open_jobs.due(now_epoch=int(self._clock()), limit=max_jobs)
        for index, job in enumerate(due):
            outcome = "not_reached" if out_of_time() else self._settle(job)
            if outcome == "not_reached":
                # Stopped early: this job and the rest stay due for the next run.
                left = due[index:]
                report[outcome] += len(left)
                oldest_open = max([oldest_open, *(self._age(j) for j in left)])
                break
            report[outcome] += 1
            if is_recovery(outcome):
                count("JobsRecovered", outcome=outcome)
            if outcome in LEFT_OPEN:
                oldest_open = max(oldest_open, self._age(job))
        metrics.add_metric(
            name="OldestOpenJobSeconds", unit=MetricUnit.Seconds, value=round(oldest_open)
        )
        for outcome, number in report.items():
            logger.info("Reconciled", extra={"outcome": outcome, "jobs": number})
        return dict(report)

    def _settle(self, job: Job) -> str:
        logger.thread_safe_clear_keys()
        logger.thread_safe_append_keys(job_id=job.job_id)
        try:
            return self._reconcile(job)
        except (FalUnavailable, VideoUnavailable) as exc:
            logger.warning("Could not settle the job this time", extra={"reason": str(exc)})
            self._check_later(job)
            return "retry_later"
        except Exception:
            # One bad job (say, a video on a host missing from MediaHosts) must not stop
            # the run: it is logged, counted, and looked at again later.
            logger.exception("Reconciling the job failed")
            count("ReconcileErrors")
            self._check_later(job)
            return "errors"

    def _age(self, job: Job) -> float:
        started = deadline_started(job.item)
        return 0.0 if started is None else max(0.0, self._clock() - started)

    def _reconcile(self, job: Job) -> str:
        fresh = self._jobs.get(job.job_id)  # the index is eventually consistent; the table is not
        if fresh is None or fresh.status not in (JobStatus.PENDING, JobStatus.SUBMITTED):
            return "already_final"
        request_id = fresh.item.get("request_id")
        if not request_id:
            return self._resubmit(fresh)
        logger.thread_safe_append_keys(fal_request_id=request_id)
        try:
            delivery = self._fal().outcome(str(request_id))
        except FalUnavailable:
            # fal cannot say (an outage, or a request it no longer knows): past the deadline
            # that is as final as a request that never finished.
            if self._past_deadline(fresh):
                return self._expire(fresh, str(request_id))
            raise
        if delivery is None:
            return self._still_running(fresh, str(request_id))
        outcome = self._results.record(fresh, delivery)
        return f"recovered_{outcome.value}"

    def _check_later(self, job: Job) -> None:
        self._open_jobs.check_again_at(job.job_id, int(self._clock()) + self._recheck_seconds)

    def _resubmit(self, job: Job) -> str:
        if int(job.item.get("claim_expires_at", 0)) > self._clock():
            self._open_jobs.check_again_at(job.job_id, int(job.item["claim_expires_at"]))
            return "claim_still_live"
        upload = Upload(
            bucket=str(job.item["source_bucket"]),
            key=str(job.item["source_key"]),
            size=None,
            etag=None,
            version_id=str(job.item.get("source_version") or "") or None,
            sequencer=None,
        )
        # Past the deadline this is the last try, as a message's last receive is: if fal is still
        # unavailable the submit path records FAILED fal_unavailable (not EXPIRED: no request
        # reached fal, nothing needs cancelling, and a re-drive or `retry` may start it again).
        last_try = self._past_deadline(job)
        try:
            outcome = self._submit.process_upload(upload, final_attempt=last_try)
        except FalUnavailable:
            if not last_try:
                raise
            return "gave_up_fal_unavailable"
        return f"resubmitted_{outcome.value}"

    def _past_deadline(self, job: Job) -> bool:
        started = deadline_started(job.item)
        return started is not None and self._clock() - started >= self._deadline_seconds

    def _still_running(self, job: Job, request_id: str) -> str:
        if not self._past_deadline(job):
            self._check_later(job)
            return "still_running"
        return self._expire(job, request_id)

    def _expire(self, job: Job, request_id: str) -> str:
        self._fal().cancel(request_id)
        try:
            expired = self._jobs.transition(
                job.job_id,
                JobStatus.EXPIRED,
                attributes={
                    "error_code": ErrorCode.FAL_DEADLINE,
                    "error_message": f"fal did not finish within {self._deadline_seconds} s; "
                    "the request was cancelled",
                },
            )
        except JobConflict:
            return "already_final"
        self._events.finished(expired)
        count("JobsExpired")
        return "expired"
