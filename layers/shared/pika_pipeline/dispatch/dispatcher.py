"""Dispatch: while not paused, pair the next waiting job with a free fal slot and submit it.

Any number of dispatchers may run at once (submit functions after each batch or nudge, the
reconciler after each run): the slot transaction lets exactly one win each slot and each job.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit

from pika_pipeline.dispatch.order import rank_of
from pika_pipeline.dispatch.slots import BudgetLost, JobLost, SlotLost
from pika_pipeline.errors import FalUnavailable, JobConflict
from pika_pipeline.jobs.job import Job
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.observability import Metric, logger, metrics
from pika_pipeline.spend.budget import BudgetExceeded
from pika_pipeline.webhook.tokens import new_attempt

if TYPE_CHECKING:
    from pika_pipeline.dispatch.control import PauseSwitch
    from pika_pipeline.dispatch.order import WaitingJob, WaitingJobs
    from pika_pipeline.dispatch.slots import Claim, Slot, Slots
    from pika_pipeline.jobs.repository import JobRepository
    from pika_pipeline.spend.budget import BudgetGate, Reservation
    from pika_pipeline.submit.service import SubmitService

# One fill never runs away: a lost race costs a try, and a burst of races ends the fill (the
# winners fill the rest).
MAX_LOST_RACES = 20
# A job another function queued is left to that function's own fill for this long (everything
# waiting fitting the free slots): past it, its fill missed it, and any fill takes it.
OTHERS_FILL_SECONDS = 2.0


class Dispatcher:
    def __init__(
        self,
        *,
        slots: Slots,
        waiting: WaitingJobs,
        pause: PauseSwitch,
        repository: JobRepository,
        submit: SubmitService,
        claim_seconds: int,
        reconcile_after_seconds: int,
        clock: Callable[[], float] = time.time,
        budget: BudgetGate | None = None,
        executor: Executor | None = None,
    ) -> None:
        """``executor``: where a fill's jobs take their slots and are submitted to fal,
        concurrently (the submit function shares its records' threads); None: one by one."""
        self._budget = budget
        self._executor = executor
        self._slots = slots
        self._waiting = waiting
        self._pause = pause
        self._jobs = repository
        self._submit = submit
        self._claim_seconds = claim_seconds
        self._reconcile_after_seconds = reconcile_after_seconds
        self._clock = clock

    def fill(self, *, waiting_first: bool = False, own: frozenset[str] = frozenset()) -> int:
        """Dispatches waiting jobs until no slot or no job is left; returns how many.

        The slots and the head of the queue are read once each. Each job is paired with its own
        free slot, and the pairs are taken and submitted side by side (on ``executor``), each
        in its own slot transaction: a fill of ten costs about one transaction and one fal
        round trip, not ten. No two pairs share a slot or a job, so they never race each other;
        a race lost to another dispatcher costs a second round for what is left.
        ``waiting_first``: read the queue before anything else, for a fill that most likely
        finds nothing waiting (a completion's nudge): one read then settles it.
        The slots' read also brings the pause switch and the budget's limits.
        ``own``: the jobs the caller has just queued. When everything waiting fits the free
        slots, order does not matter, and the fill leaves the jobs other functions queued a
        moment ago to their own fills, which are running too (a burst of single uploads would
        otherwise have every fill race for every job); see ``_left_to_their_own_fills``.
        """
        head: list[WaitingJob] = []
        if waiting_first:
            head = self._waiting.head(self._slots.count)
            if not head:
                return 0
        # The pause switch and the budget's limits come with the slots, in the same read: every
        # fill sees them as they are, for no call of their own.
        view = self._slots.view(also=self._pause.item_keys)
        if self._pause.state_read(view.also).paused:
            return 0
        if self._budget is not None:
            self._budget.begin_fill()
        free = deque(view.free)
        if not waiting_first:
            if not free:
                return 0
            head = self._waiting.head(len(free))
        asked = self._slots.count if waiting_first else len(free)
        # The queue may hold more than was read: read on if the fill runs out of candidates.
        more = len(head) >= asked
        # Per lane, the highest rank waiting: a fill leaving that job to its own fill leaves it
        # the lane's clock too.
        lane_tops: dict[str, int] = {}
        if own and not more:
            lane_tops = _lane_tops(head)
            head = self._left_to_their_own_fills(head, own, free)
        candidates = deque(head)
        seen: set[str] = set()  # taken or lost: the index may still list them for a moment
        fal_down = threading.Event()
        dispatched = races = 0
        stop = False
        while free and races <= MAX_LOST_RACES and not stop and not fal_down.is_set():
            if not candidates:
                if not more:
                    break
                head = self._waiting.head(len(free), skip=frozenset(seen))
                candidates, more = deque(head), len(head) >= len(free)
                if not candidates:
                    break
            pairs: list[_Pair] = []
            while candidates and free:
                job = candidates[0]
                # Reserve before paying: the price goes into the slot transaction. A job that
                # does not fit ends the fill: it is the head of what is left, and nothing behind
                # it may overtake it (a cheaper job of a lower lane included); the next fill,
                # after a slot frees, a `budget set` nudge or the reconciler's run, tries again.
                reservation: Reservation | None = None
                if self._budget is not None:
                    try:
                        reservation = self._budget.reservation(
                            job.job_id, now_epoch=self._clock(), item=job.item or None
                        )
                    except BudgetExceeded as exceeded:
                        self._waits_for_budget(job.job_id, str(exceeded))
                        stop = True
                        break
                    if reservation is None:  # gone meanwhile
                        seen.add(candidates.popleft().job_id)
                        races += 1
                        continue
                    self._budget.hold(reservation)
                pairs.append(_Pair(candidates.popleft(), free.popleft(), reservation))
            _mark_clock_movers(pairs, lane_tops)
            futures = [self._start(pair, fal_down) for pair in pairs]
            # Every job taken is submitted (or its failure recorded) before the fill returns:
            # the function must not freeze with a submit half done.
            wait(futures)
            again: list[WaitingJob] = []  # back to the head of the candidates, in order
            for pair, future in zip(pairs, futures, strict=True):
                try:
                    outcome = future.result()
                except Exception:
                    outcome = None
                if outcome is _Outcome.TAKEN:
                    dispatched += 1
                    seen.add(pair.job.job_id)
                    if self._budget is not None and pair.reservation is not None:
                        self._budget.reserved(pair.reservation)
                    continue
                if self._budget is not None and pair.reservation is not None:
                    self._budget.release(pair.reservation)
                if outcome in (_Outcome.SLOT_LOST, _Outcome.JOB_LOST):
                    race = {"slot": pair.slot.number, "lost": outcome.value}
                    logger.info("Lost a dispatch race", extra={"job_id": pair.job.job_id, **race})
                if outcome is _Outcome.SLOT_LOST:  # the job may have the next slot
                    races += 1
                    again.append(pair.job)
                elif outcome is _Outcome.JOB_LOST:  # the slot may take the next job
                    races += 1
                    seen.add(pair.job.job_id)
                    free.appendleft(pair.slot)
                elif outcome is _Outcome.BUDGET_LOST:
                    self._waits_for_budget(pair.job.job_id, "another dispatcher reserved the rest")
                    stop = True
                else:  # not tried (fal was down), or failed: the job and the slot stay free
                    again.append(pair.job)
                    free.appendleft(pair.slot)
            candidates.extendleft(reversed(again))
            for future in futures:
                future.result()  # an unexpected error fails the fill, as it did inline
        return dispatched

    def _left_to_their_own_fills(
        self, head: list[WaitingJob], own: frozenset[str], free: deque[Slot]
    ) -> list[WaitingJob]:
        """Everything waiting fits: this fill's own jobs, and any other that has waited longer
        than a fill takes (its own fill missed it or failed).

        Each job takes the slot its id points at (a hash modulo the slots), or the next free
        one after it: fills running at once may have read the slots a moment apart, yet each
        picks its own job's slot, and a few jobs among many slots rarely point at one."""
        now = self._clock()
        mine = [
            job
            for job in head
            if job.job_id in own or now - _epoch(job.queued_at) >= OTHERS_FILL_SECONDS
        ]
        left = sorted(free, key=lambda slot: slot.number)
        chosen: list[Slot] = []
        for job in mine:
            aim = zlib.crc32(job.job_id.encode()) % self._slots.count
            slot = next((s for s in left if s.number >= aim), left[0])
            left.remove(slot)
            chosen.append(slot)
        free.clear()
        free.extend(chosen + left)
        return mine

    def _measure(self, job: WaitingJob, slot: Slot, now: float) -> None:
        waited = max(0.0, now - _epoch(job.queued_at))
        metrics.add_metric(name=Metric.QUEUE_WAIT_SECONDS, unit=MetricUnit.Seconds, value=waited)
        # From the slot freeing (or the job arriving, if the slot was idle) to this dispatch.
        started_waiting = max(slot.freed_at or 0.0, _epoch(job.queued_at))
        metrics.add_metric(
            name=Metric.DISPATCH_LATENCY,
            unit=MetricUnit.Milliseconds,
            value=max(0.0, now - started_waiting) * 1000,
        )

    def _start(self, pair: _Pair, fal_down: threading.Event) -> Future[_Outcome]:
        """Takes the pair's slot and submits its job on the executor (inline without one)."""
        if self._executor is not None:
            return self._executor.submit(self._take_and_submit, pair, fal_down)
        done: Future[_Outcome] = Future()
        try:
            done.set_result(self._take_and_submit(pair, fal_down))
        except Exception as exc:
            done.set_exception(exc)
        return done

    def _take_and_submit(self, pair: _Pair, fal_down: threading.Event) -> _Outcome:
        if fal_down.is_set():  # a job of this fill found fal unavailable: send no more
            return _Outcome.NOT_TRIED
        job, slot = pair.job, pair.slot
        now = self._clock()
        try:
            claim = self._slots.take(
                slot,
                job,
                attempt=new_attempt(),
                now_epoch=now,
                claim_seconds=self._claim_seconds,
                reconcile_after_seconds=self._reconcile_after_seconds,
                reservation=pair.reservation,
                move_clock=pair.moves_clock,
            )
        except BudgetLost:
            return _Outcome.BUDGET_LOST
        except SlotLost:
            return _Outcome.SLOT_LOST
        except JobLost:
            return _Outcome.JOB_LOST
        self._measure(job, slot, now)
        if not self._submit_dispatched(job, slot, claim, now):
            fal_down.set()
        return _Outcome.TAKEN

    def _waits_for_budget(self, job_id: str, reason: str) -> None:
        assert self._budget is not None
        logger.info("Waiting for budget", extra={"job_id": job_id, "reason": reason})
        self._budget.waiting(job_id)

    def _submit_dispatched(self, job: WaitingJob, slot: Slot, claim: Claim, started: float) -> bool:
        """Submits the claimed job; False when fal is unavailable (stop filling for now).

        The job is the one the queue listed: what a submit needs of it was written when it was
        queued, and the slot transaction has just checked it was still waiting, so it is not
        read again.

        fal unavailable: the claim is released and the job keeps its slot; the reconciler
        submits it again when it next looks (ReconcileAfterSeconds), and past the deadline
        records FAILED fal_unavailable, as for a crashed submit. Putting it back in the queue
        instead would have every fill hammer a fal that is down.
        """
        logger.thread_safe_clear_keys()  # this job's lines carry its ids, none of the last one's
        logger.thread_safe_append_keys(job_id=job.job_id, object_key=job.item.get("source_key"))
        logger.info(
            "Dispatched",
            extra={"slot": slot.number, "queue_wait_seconds": started - _epoch(job.queued_at)},
        )
        claimed = Job(
            {
                **{k: v for k, v in job.item.items() if k not in ("queue_lane", "queue_order")},
                "status": JobStatus.PENDING,
                "slot": slot.number,
                "dispatched_at": claim.dispatched_at,
            }
        )
        try:
            self._submit.dispatched(claimed, attempt=claim.attempt, started=started)
        except FalUnavailable:
            return False
        except JobConflict:
            logger.info("The job moved on before it was submitted", extra={"job_id": job.job_id})
        return True


class _Outcome(Enum):
    TAKEN = "taken"  # the slot transaction committed (and the job was submitted, or failed)
    SLOT_LOST = "slot lost"
    JOB_LOST = "job lost"
    BUDGET_LOST = "budget lost"
    NOT_TRIED = "not tried"


@dataclass
class _Pair:
    """A waiting job and the free slot it is to take, with its price's reservation."""

    job: WaitingJob
    slot: Slot
    reservation: Reservation | None
    moves_clock: bool = False


def _mark_clock_movers(pairs: list[_Pair], lane_tops: dict[str, int]) -> None:
    """The highest-ranked job of each lane moves the lane's clock in its slot transaction (one
    write per lane and fill: transactions of one fill sharing the clock item would cancel each
    other). If it loses its race, the clock stays a little behind until the next fill.

    ``lane_tops``: a higher rank waiting in the lane, left to another fill, moves the clock
    there instead: fills running at once would otherwise each move it, and the one that moved
    it first makes the others' lower moves fail and their transactions go again."""
    top: dict[str, _Pair] = {}
    for pair in pairs:
        best = top.get(pair.job.lane)
        if best is None or rank_of(pair.job.order) > rank_of(best.job.order):
            top[pair.job.lane] = pair
    for lane, pair in top.items():
        rank = rank_of(pair.job.order)
        pair.moves_clock = rank >= lane_tops.get(lane, rank)


def _lane_tops(jobs: list[WaitingJob]) -> dict[str, int]:
    tops: dict[str, int] = {}
    for job in jobs:
        tops[job.lane] = max(tops.get(job.lane, 0), rank_of(job.order))
    return tops


def _epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time).timestamp()
