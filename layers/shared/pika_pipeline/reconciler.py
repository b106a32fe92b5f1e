"""The reconciler: every open job ends in a final status, even when its webhook never comes.

It reads open jobs due for a check from the sparse ``OpenJobs`` index (never a scan), a bounded
number per run, and for each:
- a claim that ran out before fal was called (a crashed submit) is submitted again through the
  submit path, under the same exactly-once claim;
- a request fal finished is recorded through the webhook's own code (same checks, same streaming
  copy, same transitions and events);
- a request still queued or running is checked again later, until the deadline: then it is
  cancelled and the job EXPIRED.
Everything is a conditional transition, so running beside the webhook, or twice at once, is safe:
whoever records first wins and the other changes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from pika_pipeline.errors import FalUnavailable, JobConflict, VideoUnavailable
from pika_pipeline.jobs import ErrorCode, JobStatus
from pika_pipeline.observability import count, logger
from pika_pipeline.uploads import Upload

if TYPE_CHECKING:
    from pika_pipeline.fal_gateway import FalGateway
    from pika_pipeline.job_events import JobEvents
    from pika_pipeline.job_repository import Job, JobRepository, OpenJobs
    from pika_pipeline.job_results import JobResults
    from pika_pipeline.submit_service import SubmitService


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
        for job in self._open_jobs.due(now_epoch=int(self._clock()), limit=max_jobs):
            if out_of_time():
                break
            logger.thread_safe_clear_keys()
            logger.thread_safe_append_keys(job_id=job.job_id)
            try:
                report[self._reconcile(job)] += 1
            except (FalUnavailable, VideoUnavailable) as exc:
                logger.warning("Could not settle the job this time", extra={"reason": str(exc)})
                self._check_later(job)
                report["retry_later"] += 1
            except Exception:
                # One bad job (say, a video on a host missing from MediaHosts) must not stop
                # the run: it is logged, counted, and looked at again later.
                logger.exception("Reconciling the job failed")
                count("ReconcileErrors")
                self._check_later(job)
                report["errors"] += 1
        for outcome, number in report.items():
            logger.info("Reconciled", extra={"outcome": outcome, "jobs": number})
        return dict(report)

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
        count("JobsRecovered", outcome=outcome.value)
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
        outcome = self._submit.process_upload(upload, final_attempt=False)
        count("JobsRecovered", outcome=f"resubmitted_{outcome.value}")
        return f"resubmitted_{outcome.value}"

    def _past_deadline(self, job: Job) -> bool:
        started = job.item.get("submitted_at") or job.item.get("created_at")
        age = self._clock() - datetime.fromisoformat(str(started)).timestamp()
        return age >= self._deadline_seconds

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
