"""The queue as an operator sees it, refreshed by the reconciler each run: the gauges (waiting
jobs, oldest wait, requests at fal, time paused) and each waiting job's position and estimated
start, written on its record where ``pika-pipeline status`` shows them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from pika_pipeline.dispatch.control import iso
from pika_pipeline.errors import JobConflict
from pika_pipeline.observability import Metric, logger, metrics

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from pika_pipeline.dispatch.control import PauseSwitch
    from pika_pipeline.dispatch.order import WaitingJobs
    from pika_pipeline.dispatch.slots import Slots
    from pika_pipeline.jobs.repository import JobRepository
    from pika_pipeline.spend.budget import BudgetGate

RATE_ITEM = "rate"  # the dispatch count at the last run, to measure the dispatch rate


class QueueReport:
    def __init__(
        self,
        *,
        waiting: WaitingJobs,
        slots: Slots,
        pause: PauseSwitch,
        repository: JobRepository,
        control: Callable[[], Table],
        clock: Callable[[], float] = time.time,
        budget: BudgetGate | None = None,
    ) -> None:
        self._budget = budget
        self._waiting = waiting
        self._slots = slots
        self._pause = pause
        self._jobs = repository
        self._control = control
        self._clock = clock

    def refresh(self, out_of_time: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        now = self._clock()
        rate = self._measured_rate(now)
        waiting = list(self._waiting.all())
        oldest = max((now - _epoch(job.queued_at) for job in waiting), default=0.0)
        in_flight = self._slots.view().in_flight
        paused = self._pause.state(fresh=True).paused_seconds(now)
        metrics.add_metric(name=Metric.JOBS_QUEUED, unit=MetricUnit.Count, value=len(waiting))
        metrics.add_metric(name=Metric.FAL_IN_FLIGHT, unit=MetricUnit.Count, value=in_flight)
        metrics.add_metric(
            name=Metric.OLDEST_QUEUED_SECONDS, unit=MetricUnit.Seconds, value=round(oldest)
        )
        metrics.add_metric(
            name=Metric.DISPATCH_PAUSED_SECONDS, unit=MetricUnit.Seconds, value=round(paused)
        )
        # One write per waiting job per run (DynamoDB on demand: ~$1.25 per million): a person
        # reading `status` sees a place at most one reconciler period old. Positions count the
        # jobs dispatched before it (higher lanes first); the estimate uses the dispatch rate
        # measured since the last run, and is left out while nothing is being dispatched.
        # The same write says whether the job waits for budget: the dispatcher marks only the
        # head it stopped at, yet every job behind it waits for the same reason (none overtakes
        # the head), from the first whose price and those ahead of it the budget cannot pay.
        left = self._budget.left_usd() if self._budget is not None else None
        ahead = Decimal(0)
        for position, job in enumerate(waiting, start=1):
            if out_of_time():
                break
            # A job without a recorded price (queued before prices were) is not judged here.
            ahead += job.price_usd or Decimal(0)
            over = None if self._budget is None else left is not None and ahead > left
            estimate = iso(now + position / rate) if rate > 0 and not over else None
            with contextlib.suppress(JobConflict):  # dispatched or cancelled meanwhile
                self._jobs.set_queue_position(
                    job.job_id,
                    position=position,
                    estimated_start_at=estimate,
                    waiting_for_budget=over,
                )
        report = {
            "queued": len(waiting),
            "in_flight": in_flight,
            "oldest_queued_seconds": round(oldest),
            "dispatch_rate_per_second": round(rate, 4),
        }
        logger.info("Queue", extra=report)
        return report

    def _measured_rate(self, now: float) -> float:
        """Jobs dispatched per second since the last run (0 for the first run)."""
        total = self._slots.dispatched_total()
        previous = (
            self._control().get_item(Key={"pk": RATE_ITEM}, ConsistentRead=True).get("Item") or {}
        )
        self._control().put_item(Item={"pk": RATE_ITEM, "dispatched": total, "at": str(now)})
        if not previous or float(str(previous["at"])) >= now:
            return 0.0
        return max(0, total - int(str(previous["dispatched"]))) / (now - float(str(previous["at"])))


def _epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()
