"""Dispatch: while not paused, pair the next waiting job with a free fal slot and submit it.

Any number of dispatchers may run at once (submit functions after each batch or nudge, the
reconciler after each run): the slot transaction lets exactly one win each slot and each job.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit

from pika_pipeline.dispatch.order import rank_of
from pika_pipeline.dispatch.slots import BudgetLost, JobLost, SlotLost
from pika_pipeline.errors import FalUnavailable, JobConflict
from pika_pipeline.observability import Metric, logger, metrics
from pika_pipeline.spend.budget import BudgetExceeded
from pika_pipeline.webhook.tokens import new_attempt

if TYPE_CHECKING:
    from pika_pipeline.dispatch.control import PauseSwitch
    from pika_pipeline.dispatch.order import FairShare, WaitingJobs
    from pika_pipeline.dispatch.slots import Slots
    from pika_pipeline.jobs.repository import JobRepository
    from pika_pipeline.spend.budget import BudgetGate, Reservation
    from pika_pipeline.submit.service import SubmitService

# One fill never runs away: a lost race costs a try, and a burst of races ends the fill (the
# winners fill the rest).
MAX_LOST_RACES = 20


class Dispatcher:
    def __init__(
        self,
        *,
        slots: Slots,
        waiting: WaitingJobs,
        fair_share: FairShare,
        pause: PauseSwitch,
        repository: JobRepository,
        submit: SubmitService,
        claim_seconds: int,
        reconcile_after_seconds: int,
        clock: Callable[[], float] = time.time,
        budget: BudgetGate | None = None,
    ) -> None:
        self._budget = budget
        self._slots = slots
        self._waiting = waiting
        self._fair_share = fair_share
        self._pause = pause
        self._jobs = repository
        self._submit = submit
        self._claim_seconds = claim_seconds
        self._reconcile_after_seconds = reconcile_after_seconds
        self._clock = clock

    def fill(self) -> int:
        """Dispatches waiting jobs until no slot or no job is left; returns how many."""
        if self._pause.paused():
            return 0
        free = deque(self._slots.view().free)
        lost: set[str] = set()
        dispatched = races = 0
        while free and races <= MAX_LOST_RACES:
            job = self._waiting.first(skip=frozenset(lost))
            if job is None:
                break
            slot = free[0]
            now = self._clock()
            attempt = new_attempt()
            # Reserve before paying: the price goes into the slot transaction. A job that does
            # not fit ends the fill: it is the head of the queue, and nothing behind it may
            # overtake it (a cheaper job of a lower lane included); the next fill, after a
            # slot frees, a `budget set` nudge or the reconciler's run, tries it again.
            reservation: Reservation | None = None
            if self._budget is not None:
                try:
                    reservation = self._budget.reservation(job.job_id, now_epoch=now)
                except BudgetExceeded as exceeded:
                    self._waits_for_budget(job.job_id, str(exceeded))
                    break
                if reservation is None:  # gone meanwhile
                    lost.add(job.job_id)
                    races += 1
                    continue
            try:
                claim = self._slots.take(
                    slot,
                    job,
                    attempt=attempt,
                    now_epoch=now,
                    claim_seconds=self._claim_seconds,
                    reconcile_after_seconds=self._reconcile_after_seconds,
                    reservation=reservation,
                )
            except BudgetLost:
                self._waits_for_budget(job.job_id, "another dispatcher reserved the rest")
                break
            except SlotLost:
                free.popleft()
                races += 1
                continue
            except JobLost:
                lost.add(job.job_id)
                races += 1
                continue
            free.popleft()
            lost.add(job.job_id)  # the index may still list it for a moment
            dispatched += 1
            if self._budget is not None and reservation is not None:
                self._budget.reserved(reservation)
            # Best effort: a stale clock only shifts fairness a little.
            try:
                self._fair_share.dispatched(job.lane, rank_of(job.order))
            except Exception:
                logger.exception("Could not move the lane's clock")
            waited = max(0.0, now - _epoch(job.queued_at))
            metrics.add_metric(
                name=Metric.QUEUE_WAIT_SECONDS, unit=MetricUnit.Seconds, value=waited
            )
            # From the slot freeing (or the job arriving, if the slot was idle) to this dispatch.
            started_waiting = max(slot.freed_at or 0.0, _epoch(job.queued_at))
            metrics.add_metric(
                name=Metric.DISPATCH_LATENCY,
                unit=MetricUnit.Milliseconds,
                value=max(0.0, now - started_waiting) * 1000,
            )
            dispatched_as = {"slot": slot.number, "queue_wait_seconds": waited}
            if not self._submit_dispatched(
                job.job_id, attempt=claim.attempt, started=now, logged=dispatched_as
            ):
                break
        return dispatched

    def _waits_for_budget(self, job_id: str, reason: str) -> None:
        assert self._budget is not None
        logger.info("Waiting for budget", extra={"job_id": job_id, "reason": reason})
        self._budget.waiting(job_id)

    def _submit_dispatched(
        self, job_id: str, *, attempt: str, started: float, logged: dict[str, float]
    ) -> bool:
        """Submits the claimed job; False when fal is unavailable (stop filling for now).

        fal unavailable: the claim is released and the job keeps its slot; the reconciler
        submits it again when it next looks (ReconcileAfterSeconds), and past the deadline
        records FAILED fal_unavailable, as for a crashed submit. Putting it back in the queue
        instead would have every fill hammer a fal that is down.
        """
        job = self._jobs.get(job_id)
        logger.thread_safe_clear_keys()  # this job's lines carry its ids, none of the last one's
        if job is None:
            return True
        logger.thread_safe_append_keys(job_id=job_id, object_key=job.item.get("source_key"))
        logger.info("Dispatched", extra=logged)
        try:
            self._submit.dispatched(job, attempt=attempt, started=started)
        except FalUnavailable:
            return False
        except JobConflict:
            logger.info("The job moved on before it was submitted", extra={"job_id": job_id})
        return True


def _epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time).timestamp()
