"""The spend guard at the dispatch gate: prices reserved in the slot transaction, jobs that do
not fit waiting for budget, the next UTC day, run-time limits, refunds once. DynamoDB is moto
in-process with the template's tables; fal is a fake that records what was sent (the stack
tests send it for real: tests/integration/test_spend_race.py, tests/e2e/test_spend_guard.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.template import load_template
from pika_pipeline.dispatch.control import DISPATCH_ITEM, OperatorItems, PauseSwitch, iso
from pika_pipeline.dispatch.dispatcher import Dispatcher
from pika_pipeline.dispatch.order import WaitingJobs, queue_order
from pika_pipeline.dispatch.slots import Slots
from pika_pipeline.errors import FalRequestFailed, FalUnavailable, FalUnavailableKind
from pika_pipeline.fal.delivery import FalDelivery
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.repository import JobRepository
from pika_pipeline.spend import refund_rules
from pika_pipeline.spend.budget import BudgetGate, BudgetLimits, BudgetLimitsReader
from pika_pipeline.spend.ledger import BUDGET_ITEM, SpendLedger

JOBS, CONTROL = "pika-jobs", "pika-control"
PRICE = Decimal("0.40")
MAY_31_NOON = datetime(2026, 5, 31, 12, tzinfo=UTC).timestamp()
JUNE_1 = datetime(2026, 6, 1, 0, 0, 1, tzinfo=UTC).timestamp()


def jid(n: int) -> str:
    """Job ids are hex digests (the reconciler's shard is read from them)."""
    return f"{n:032x}"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingSubmit:
    """Stands in for the submit path: what the dispatcher sent to fal."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def dispatched(self, job: Any, *, attempt: str, started: float) -> None:
        self.sent.append(job.job_id)


@pytest.fixture
def tables() -> Iterator[tuple[Any, Any]]:
    resources = load_template()["Resources"]
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        made = []
        for name, logical in ((JOBS, "JobsTable"), (CONTROL, "ControlTable")):
            props = resources[logical]["Properties"]
            extra = {k: v for k, v in props.items() if k == "GlobalSecondaryIndexes"}
            dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=props["AttributeDefinitions"],
                KeySchema=props["KeySchema"],
                BillingMode="PAY_PER_REQUEST",
                **extra,
            )
            made.append(dynamodb.Table(name))
        yield made[0], made[1]


class World:
    def __init__(self, jobs: Any, control: Any, *, daily: str, monthly: str = "0") -> None:
        self.jobs, self.control = jobs, control
        self.clock = Clock(MAY_31_NOON)
        self.submit = RecordingSubmit()
        self.repository = JobRepository(lambda: jobs)
        self.ledger = SpendLedger(control=lambda: control, jobs=lambda: jobs)
        self.defaults = BudgetLimits(daily_usd=Decimal(daily), monthly_usd=Decimal(monthly))
        self.limits = BudgetLimitsReader(lambda: control, defaults=self.defaults, cache_seconds=0)
        self._ids = itertools.count()

    def queue(self, count: int, *, price: Decimal | None = PRICE, batch: str = "shop") -> None:
        for _ in range(count):
            n = next(self._ids)
            job_id = jid(n)
            queued_at = iso(self.clock.now + n / 1000)
            item: dict[str, Any] = {"job_id": job_id, "batch": batch, "resolution": "720p"}
            item |= {"duration": 5, "source_bucket": "in", "source_key": f"uploads/{n}.png"}
            if price is not None:
                item["price_usd"] = price
            self.repository.enqueue(
                item, lane="normal", order=queue_order(n, queued_at, job_id), queued_at=queued_at
            )

    def dispatcher(self, *, items: OperatorItems | None = None) -> Dispatcher:
        """``items``: the pause switch and the limits read together, as the functions do."""
        control = lambda: self.control  # noqa: E731
        if items is not None:
            self.limits = BudgetLimitsReader(control, defaults=self.defaults, items=items)
        return Dispatcher(
            slots=Slots(control=control, jobs=lambda: self.jobs, count=20),
            waiting=WaitingJobs(lambda: self.jobs),
            pause=PauseSwitch(control, items=items),
            repository=self.repository,
            submit=self.submit,  # type: ignore[arg-type]
            claim_seconds=300,
            reconcile_after_seconds=900,
            clock=self.clock,
            budget=BudgetGate(
                limits=self.limits,
                ledger=self.ledger,
                jobs=lambda: self.jobs,
                price_of=lambda item: Decimal("0.45"),
                clock=self.clock,
            ),
        )

    def job(self, job_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.jobs.get_item(Key={"job_id": job_id})["Item"]
        return item

    def counter(self, key: str) -> dict[str, Any]:
        return self.control.get_item(Key={"pk": key}).get("Item") or {}


def test_a_budget_stops_dispatch_at_exactly_floor_of_budget_over_price(
    tables: tuple[Any, Any],
) -> None:
    world = World(*tables, daily="2.00")
    world.queue(8)

    dispatched = world.dispatcher().fill()

    assert dispatched == 5 == len(world.submit.sent)  # floor(2.00 / 0.40)
    assert world.counter("spend#day#2026-05-31")["reserved_usd"] == Decimal("2.00")
    assert world.counter("spend#month#2026-05")["videos"] == 5
    first = world.job(world.submit.sent[0])
    assert (first["reserved_usd"], first["reserved_day"]) == (PRICE, "2026-05-31")
    waiting = world.job(jid(5))
    assert (waiting["status"], waiting["waiting_for"]) == ("QUEUED", "budget")
    assert "reserved_usd" not in waiting


def test_the_same_job_is_never_reserved_twice(tables: tuple[Any, Any]) -> None:
    world = World(*tables, daily="10")
    world.queue(1)
    world.dispatcher().fill()

    assert world.dispatcher().fill() == 0

    assert world.counter("spend#day#2026-05-31")["reserved_usd"] == PRICE


def test_a_monthly_budget_holds_across_days_and_the_next_utc_day_has_its_own(
    tables: tuple[Any, Any],
) -> None:
    world = World(*tables, daily="0.80", monthly="1.20")
    world.queue(5)
    assert world.dispatcher().fill() == 2  # the day's 0.80

    world.clock.now = JUNE_1  # a new day and a new month
    assert world.dispatcher().fill() == 2

    assert world.counter("spend#day#2026-06-01")["reserved_usd"] == Decimal("0.80")
    assert world.counter("spend#month#2026-06")["videos"] == 2
    assert world.job(jid(4))["waiting_for"] == "budget"


def test_raising_the_budget_at_run_time_releases_the_waiting_jobs(
    tables: tuple[Any, Any],
) -> None:
    world = World(*tables, daily="0.40")
    world.queue(3)
    assert world.dispatcher().fill() == 1

    world.control.put_item(Item={"pk": BUDGET_ITEM, "daily_usd": Decimal("1.20")})

    assert world.dispatcher().fill() == 2
    assert "waiting_for" not in world.job(jid(2))


def test_a_fill_reads_the_pause_switch_and_the_budget_in_one_call(
    tables: tuple[Any, Any],
) -> None:
    world = World(*tables, daily="10")
    world.queue(4)
    items = OperatorItems(lambda: world.control, cache_seconds=60)
    reads: list[set[str]] = []  # the control items each read names

    def pk(key: dict[str, Any]) -> str:
        value = key.get("pk", "")
        return str(value.get("S", "") if isinstance(value, dict) else value)

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "GetItem":
            reads.append({pk(params["Key"])})
        elif model.name == "BatchGetItem":
            for request in params["RequestItems"].values():
                reads.append({pk(key) for key in request["Keys"]})

    world.control.meta.client.meta.events.register("provide-client-params.dynamodb", record)
    world.control.put_item(Item={"pk": DISPATCH_ITEM, "paused": True})

    assert world.dispatcher(items=items).fill() == 0

    world.control.put_item(Item={"pk": DISPATCH_ITEM, "paused": False})
    world.control.put_item(Item={"pk": BUDGET_ITEM, "daily_usd": Decimal("0.80")})
    # A paused switch is read again at once: the resume and the operator's limit are seen.
    assert world.dispatcher(items=items).fill() == 2
    operator_reads = [keys for keys in reads if keys & {DISPATCH_ITEM, BUDGET_ITEM}]
    assert operator_reads
    # Never one without the other (a fill reads both with the slots).
    assert all({DISPATCH_ITEM, BUDGET_ITEM} <= keys for keys in operator_reads)


def test_a_zero_limit_means_no_limit_and_a_job_without_a_price_is_priced_now(
    tables: tuple[Any, Any],
) -> None:
    world = World(*tables, daily="0")
    world.queue(3, price=None)

    assert world.dispatcher().fill() == 3
    assert world.counter("spend#day#2026-05-31")["reserved_usd"] == Decimal("1.35")


def test_a_refund_gives_the_price_back_to_the_day_it_was_reserved_in_once(
    tables: tuple[Any, Any],
) -> None:
    world = World(*tables, daily="0.40")
    world.queue(2)
    world.dispatcher().fill()
    world.clock.now = JUNE_1

    assert world.ledger.refund(jid(0), reason="fal server error") == PRICE
    assert world.ledger.refund(jid(0), reason="again") is None

    may = world.counter("spend#day#2026-05-31")
    assert (may["reserved_usd"], may["videos"], may["refunded_usd"]) == (0, 0, PRICE)
    assert world.job(jid(0))["refunded_usd"] == PRICE
    assert "reserved_usd" not in world.job(jid(0))


def test_what_is_refunded_follows_what_fal_charges() -> None:
    assert refund_rules.refused_submit_refunds(FalRequestFailed(ErrorCode.FAL_AUTH, "403"))
    assert refund_rules.refused_submit_refunds(FalRequestFailed(ErrorCode.FAL_ERROR, "404"))
    assert not refund_rules.refused_submit_refunds(
        FalRequestFailed(ErrorCode.FAL_VALIDATION, "422")
    )
    refused = FalUnavailable("500", kind=FalUnavailableKind.SERVER_ERROR, created_nothing=True)
    lost = FalUnavailable("read timeout", kind=FalUnavailableKind.TIMEOUT)
    assert refund_rules.unavailable_submit_refunds(refused)
    assert not refund_rules.unavailable_submit_refunds(lost)

    def result(error: str) -> FalDelivery:
        return FalDelivery(request_id="r", status="ERROR", error=error, payload={"detail": "x"})

    assert refund_rules.result_refunds(result("Invalid status code: 500"))
    assert refund_rules.result_refunds(result("Invalid status code: 504"))
    assert not refund_rules.result_refunds(result("Invalid status code: 422"))
    assert not refund_rules.result_refunds(FalDelivery(request_id="r", status="OK", payload={}))
