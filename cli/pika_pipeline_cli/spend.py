"""What the pipeline has spent at fal, and the budgets that limit it: `spend`, `budget`,
`budget set`. Reads and writes the control table's items the dispatcher reserves against
(pika_pipeline/spend), so it works the same against a deployed stack and the local stack."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr

from pika_pipeline.jobs.job import now_iso
from pika_pipeline.spend.budget import BudgetLimits, limits_from
from pika_pipeline.spend.ledger import BUDGET_ITEM, PeriodSpend, SpendLedger, day_of, month_of
from pika_pipeline_cli.queue_control import AT_FAL, nudge
from pika_pipeline_cli.resources import Pipeline


@dataclass(frozen=True)
class BudgetState:
    limits: BudgetLimits
    overridden_by: str | None  # who ran `budget set`, or None: the template's defaults
    day: str
    month: str
    today: PeriodSpend
    this_month: PeriodSpend

    def remaining(self, limit: Decimal, spend: PeriodSpend) -> Decimal | None:
        return None if limit <= 0 else max(Decimal(0), limit - spend.reserved_usd)

    def left_usd(self) -> Decimal | None:
        """What the tighter of the two periods has left to reserve; None: no limit at all."""
        left = [
            r
            for r in (
                self.remaining(self.limits.daily_usd, self.today),
                self.remaining(self.limits.monthly_usd, self.this_month),
            )
            if r is not None
        ]
        return min(left, default=None)


def _defaults(pipeline: Pipeline) -> BudgetLimits:
    def parameter(name: str) -> Decimal:
        try:
            return Decimal(pipeline.output(name))
        except Exception:  # a stack deployed before the budget outputs: no limit known
            return Decimal(0)

    return BudgetLimits(
        daily_usd=parameter("DailyBudgetUSD"), monthly_usd=parameter("MonthlyBudgetUSD")
    )


def budget_state(pipeline: Pipeline, *, now: datetime | None = None) -> BudgetState:
    moment = (now or datetime.now(UTC)).timestamp()
    item: dict[str, Any] = (
        pipeline.control_table().get_item(Key={"pk": BUDGET_ITEM}, ConsistentRead=True).get("Item")
        or {}
    )
    ledger = SpendLedger(control=pipeline.control_table, jobs=pipeline.table)
    day, month = day_of(moment), month_of(moment)
    today, this_month = ledger.spent(day=day, month=month)
    return BudgetState(
        limits=limits_from(item, _defaults(pipeline)),
        overridden_by=str(item["updated_by"]) if item.get("updated_by") else None,
        day=day,
        month=month,
        today=today,
        this_month=this_month,
    )


def set_budget(
    pipeline: Pipeline, *, daily: Decimal | None, monthly: Decimal | None, by: str
) -> None:
    """Overrides the template's limits at run time, then nudges the dispatcher: jobs waiting for
    budget go at once if the new limits let them."""
    sets, values = ["updated_at = :now", "updated_by = :by"], {":now": now_iso(), ":by": by}
    for name, value in (("daily_usd", daily), ("monthly_usd", monthly)):
        if value is not None:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = value  # type: ignore[assignment]
    pipeline.control_table().update_item(
        Key={"pk": BUDGET_ITEM},
        UpdateExpression="SET " + ", ".join(sets),
        ExpressionAttributeValues=values,
    )
    nudge(pipeline)


@dataclass
class SpendRow:
    videos: int = 0
    usd: Decimal = Decimal(0)
    in_flight_videos: int = 0  # reserved, not finished yet
    in_flight_usd: Decimal = Decimal(0)
    refunded_videos: int = 0
    refunded_usd: Decimal = Decimal(0)


@dataclass
class SpendReport:
    days: list[str]
    by_day: dict[str, SpendRow] = field(default_factory=lambda: defaultdict(SpendRow))
    by_batch: dict[tuple[str, str], SpendRow] = field(default_factory=lambda: defaultdict(SpendRow))

    def as_json(self) -> dict[str, Any]:
        def row(r: SpendRow) -> dict[str, Any]:
            return {k: str(v) if isinstance(v, Decimal) else v for k, v in r.__dict__.items()}

        return {
            "days": {d: row(r) for d, r in sorted(self.by_day.items())},
            "batches": [
                {"day": d, "batch": b, **row(r)} for (d, b), r in sorted(self.by_batch.items())
            ],
        }


def spend_report(pipeline: Pipeline, *, days: int, now: datetime | None = None) -> SpendReport:
    """Spend per UTC day and per batch over the last ``days`` days, from the jobs' ledger
    entries (a scan: the CLI's, never a function's)."""
    today = (now or datetime.now(UTC)).date()
    wanted = [(today - timedelta(days=n)).isoformat() for n in range(days)]
    report = SpendReport(days=wanted)
    arguments: dict[str, Any] = {
        "FilterExpression": Attr("reserved_day").gte(wanted[-1]),
        # BATCH and STATUS are DynamoDB reserved words: named through placeholders.
        "ProjectionExpression": "reserved_day, #b, #s, reserved_usd, refunded_usd",
        "ExpressionAttributeNames": {"#b": "batch", "#s": "status"},
    }
    table = pipeline.table()
    while True:
        response = table.scan(**arguments)
        for item in response.get("Items", []):
            _count(report, item)
        if "LastEvaluatedKey" not in response:
            break
        arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return report


def _count(report: SpendReport, item: dict[str, Any]) -> None:
    day, batch = str(item["reserved_day"]), str(item.get("batch", ""))
    for row in (report.by_day[day], report.by_batch[(day, batch)]):
        if "refunded_usd" in item:
            row.refunded_videos += 1
            row.refunded_usd += Decimal(str(item["refunded_usd"]))
            continue
        price = Decimal(str(item.get("reserved_usd", 0)))
        row.videos += 1
        row.usd += price
        if item.get("status") in AT_FAL:
            row.in_flight_videos += 1
            row.in_flight_usd += price


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
