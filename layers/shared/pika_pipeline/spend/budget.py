"""The spend guard: a job's price is reserved against the UTC day's and month's budgets in the
same transaction that takes its fal slot, so no request is ever sent that the budget cannot pay.

Limits: ``DailyBudgetUSD`` and ``MonthlyBudgetUSD`` (0 = no limit) are the defaults; an operator's
``pika-pipeline budget set`` writes the control table's ``budget`` item, which overrides them and
which functions read cached for a few seconds. A job that does not fit waits QUEUED with
``waiting_for = budget``; it is never failed for budget reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from pika_pipeline.aws.errors import error_code
from pika_pipeline.dispatch.control import OperatorItems
from pika_pipeline.jobs.job import WAITING_FOR_BUDGET
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.observability import Metric, logger, metrics
from pika_pipeline.spend.ledger import (
    BUDGET_ITEM,
    PeriodSpend,
    SpendLedger,
    day_key,
    day_of,
    month_key,
    month_of,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

# How long a function trusts the limits it read: `budget set` takes effect within this.
BUDGET_CACHE_SECONDS = 5.0


class BudgetExceeded(Exception):
    """The job's price does not fit the day's or the month's budget: it waits."""

    def __init__(self, period: str, *, price_usd: Decimal, remaining_usd: Decimal) -> None:
        super().__init__(f"{period} budget: {remaining_usd} USD left, the job costs {price_usd}")
        self.period = period


@dataclass(frozen=True)
class BudgetLimits:
    daily_usd: Decimal  # 0: no limit
    monthly_usd: Decimal


class BudgetLimitsReader:
    """The limits in force: the control table's ``budget`` item over the template's defaults.

    ``items``: the operator items it shares with the pause switch (one read for both); without,
    it reads the ``budget`` item alone."""

    def __init__(
        self,
        control: Callable[[], Table],
        *,
        defaults: BudgetLimits,
        cache_seconds: float = BUDGET_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        items: OperatorItems | None = None,
    ) -> None:
        self._defaults = defaults
        self._items = items or OperatorItems(
            control, keys=(BUDGET_ITEM,), cache_seconds=cache_seconds, clock=monotonic
        )

    def limits(self, *, fresh: bool = False) -> BudgetLimits:
        return limits_from(self._items.item(BUDGET_ITEM, fresh=fresh), self._defaults)


def limits_from(item: dict[str, Any], defaults: BudgetLimits) -> BudgetLimits:
    """An override item's limits, each falling back to the default it does not set."""
    daily, monthly = item.get("daily_usd"), item.get("monthly_usd")
    return BudgetLimits(
        daily_usd=defaults.daily_usd if daily is None else Decimal(str(daily)),
        monthly_usd=defaults.monthly_usd if monthly is None else Decimal(str(monthly)),
    )


@dataclass(frozen=True)
class Reservation:
    """A job's price held against one day and one month: the job-side fields and the counter
    updates the slot transaction carries."""

    job_id: str
    price_usd: Decimal
    day: str
    month: str
    limits: BudgetLimits
    # What the periods had reserved when checked: the gauges after this reservation (None
    # without limits: nothing was read).
    day_reserved_usd: Decimal | None

    def counter_updates(self, control_table: str) -> list[dict[str, Any]]:
        """One conditional ADD per period: ``reserved + price <= limit``, written as
        ``reserved <= limit - price`` (a condition cannot add); no condition without a limit."""
        updates = []
        for key, limit in (
            (day_key(self.day), self.limits.daily_usd),
            (month_key(self.month), self.limits.monthly_usd),
        ):
            update: dict[str, Any] = {
                "TableName": control_table,
                "Key": {"pk": key},
                "UpdateExpression": "ADD reserved_usd :price, videos :one",
                "ExpressionAttributeValues": {":price": self.price_usd, ":one": 1},
            }
            if limit > 0:
                update["ConditionExpression"] = (
                    "attribute_not_exists(reserved_usd) OR reserved_usd <= :headroom"
                )
                update["ExpressionAttributeValues"][":headroom"] = limit - self.price_usd
            updates.append({"Update": update})
        return updates

    def job_fields(self) -> dict[str, Any]:
        """Set on the job in the claim: its ledger entry."""
        return {
            "reserved_usd": self.price_usd,
            "reserved_day": self.day,
            "reserved_month": self.month,
        }


def _fits(limits: BudgetLimits, price: Decimal, day: PeriodSpend, month: PeriodSpend) -> bool:
    return all(
        limit <= 0 or spend.reserved_usd + price <= limit
        for limit, spend in ((limits.daily_usd, day), (limits.monthly_usd, month))
    )


class BudgetGate:
    """Checks a job's price against the budgets before the slot transaction, and builds the
    reservation that transaction carries (the transaction's conditions are what guarantee it:
    this check only spares a transaction that would fail)."""

    def __init__(
        self,
        *,
        limits: BudgetLimitsReader,
        ledger: SpendLedger,
        jobs: Callable[[], Table],
        price_of: Callable[[dict[str, Any]], Decimal],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = limits
        self._ledger = ledger
        self._jobs = jobs
        self._price_of = price_of
        self._clock = clock
        # (day, month, their counters) as this fill read them, plus its own reservations.
        self._spent: tuple[str, str, PeriodSpend, PeriodSpend] | None = None

    def begin_fill(self) -> None:
        """Forgets the counters the last fill read: a fill reads them once, before its first
        reservation, and counts its own reservations on top (other dispatchers' reservations
        meanwhile are the transaction's conditions to catch; this check only spares a doomed
        transaction)."""
        self._spent = None

    def reservation(
        self,
        job_id: str,
        *,
        now_epoch: float | None = None,
        item: Mapping[str, Any] | None = None,
    ) -> Reservation | None:
        """The job's reservation, or None if the job is no longer there (another dispatcher).
        Raises BudgetExceeded when its price does not fit what the periods have left.

        ``item``: the job as the dispatcher already has it (its price was recorded when it was
        queued and does not change), sparing a read of the job."""
        if item is None:
            item = self._jobs().get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if item is None:
            return None
        price = (
            Decimal(str(item["price_usd"])) if "price_usd" in item else self._price_of(dict(item))
        )
        now = self._clock() if now_epoch is None else now_epoch
        day, month = day_of(now), month_of(now)
        limits = self._limits.limits()
        if limits.daily_usd <= 0 and limits.monthly_usd <= 0:
            # No limit to check, nothing to read: the SpendUSD gauge comes from the
            # reconciler's run (emit_now) rather than from every dispatch.
            return Reservation(
                job_id=job_id, price_usd=price, day=day, month=month, limits=limits,
                day_reserved_usd=None,
            )  # fmt: skip
        day_spend, month_spend = self._spent_in(day, month)
        if not _fits(limits, price, day_spend, month_spend):
            # Before making a job wait, the limits and counters as they are now: `budget set`
            # and its nudge take effect at once, not after the cache's few seconds.
            limits = self._limits.limits(fresh=True)
            self._spent = None
            day_spend, month_spend = self._spent_in(day, month)
        for period, limit, spend in (
            ("daily", limits.daily_usd, day_spend),
            ("monthly", limits.monthly_usd, month_spend),
        ):
            if limit > 0 and spend.reserved_usd + price > limit:
                self.emit(limits, day_spend.reserved_usd, exhausted=period == "daily")
                raise BudgetExceeded(
                    period,
                    price_usd=price,
                    remaining_usd=max(Decimal(0), limit - spend.reserved_usd),
                )
        return Reservation(
            job_id=job_id,
            price_usd=price,
            day=day,
            month=month,
            limits=limits,
            day_reserved_usd=day_spend.reserved_usd,
        )

    def _spent_in(self, day: str, month: str) -> tuple[PeriodSpend, PeriodSpend]:
        if self._spent is None or self._spent[:2] != (day, month):
            day_spend, month_spend = self._ledger.spent(day=day, month=month)
            self._spent = (day, month, day_spend, month_spend)
        return self._spent[2], self._spent[3]

    def hold(self, reservation: Reservation) -> None:
        """Before the transaction: the reservation counted in what this fill read, so the next
        job of the fill is checked against it without reading again (jobs of a fill are
        reserved before their transactions run side by side)."""
        self._tally(reservation, reservation.price_usd)

    def release(self, reservation: Reservation) -> None:
        """The transaction lost a race (slot or job): its price is not spent after all."""
        self._tally(reservation, -reservation.price_usd)

    def reserved(self, reservation: Reservation) -> None:
        """After the transaction: the gauges."""
        if reservation.day_reserved_usd is None:
            return
        self.emit(reservation.limits, reservation.day_reserved_usd + reservation.price_usd)

    def _tally(self, reservation: Reservation, amount: Decimal) -> None:
        if reservation.day_reserved_usd is None:
            return
        if self._spent is not None and self._spent[:2] == (reservation.day, reservation.month):
            day, month, day_spend, month_spend = self._spent
            self._spent = (
                day,
                month,
                replace(day_spend, reserved_usd=day_spend.reserved_usd + amount),
                replace(month_spend, reserved_usd=month_spend.reserved_usd + amount),
            )

    def waiting(self, job_id: str) -> None:
        """Shows on the job that it waits for budget (only while it is still QUEUED)."""
        try:
            self._jobs().update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET waiting_for = :budget",
                ConditionExpression="#s = :queued AND (attribute_not_exists(waiting_for) OR "
                "waiting_for <> :budget)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":budget": WAITING_FOR_BUDGET,
                    ":queued": str(JobStatus.QUEUED),
                },
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                logger.exception("Could not show that the job waits for budget")

    def emit(
        self, limits: BudgetLimits, day_reserved_usd: Decimal, *, exhausted: bool = False
    ) -> None:
        """SpendUSD (the day's spend) and, with a daily limit, BudgetRemainingUSD: the alarms
        at 80% and 100% compare the first with their sum, so they follow `budget set`.

        ``exhausted``: the rest cannot pay the next video, so what remains for videos is 0 and
        the 100% alarm fires (with $1.00 and $0.40 videos, spend stops at $0.80)."""
        metrics.add_metric(
            name=Metric.SPEND_USD, unit=MetricUnit.NoUnit, value=float(day_reserved_usd)
        )
        if limits.daily_usd > 0:
            metrics.add_metric(
                name=Metric.BUDGET_REMAINING_USD,
                unit=MetricUnit.NoUnit,
                value=0.0
                if exhausted
                else float(max(Decimal(0), limits.daily_usd - day_reserved_usd)),
            )

    def left_usd(self) -> Decimal | None:
        """What the tighter of today's and this month's budgets has left to reserve now (the
        limits as cached); None without any limit."""
        now = self._clock()
        limits = self._limits.limits()
        day_spend, month_spend = self._ledger.spent(day=day_of(now), month=month_of(now))
        left = [
            max(Decimal(0), limit - spend.reserved_usd)
            for limit, spend in ((limits.daily_usd, day_spend), (limits.monthly_usd, month_spend))
            if limit > 0
        ]
        return min(left, default=None)

    def emit_now(self) -> None:
        """The gauges from the counters (the reconciler, each run)."""
        now = self._clock()
        day_spend, _ = self._ledger.spent(day=day_of(now), month=month_of(now))
        self.emit(self._limits.limits(), day_spend.reserved_usd)
