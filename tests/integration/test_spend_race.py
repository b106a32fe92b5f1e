"""20 dispatchers racing for the last $1.00 of the day's budget send exactly 2 videos at $0.40.

Through the local stack's DynamoDB (moto's server, whose transactions are atomic as DynamoDB's
are: local/moto_server.py), each dispatcher with its own boto3 session as each function process
has, in tables of this test's own made from the template's definitions.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest

from local.aws import REGION, aws_environment
from local.template import load_template
from pika_pipeline.dispatch.control import PauseSwitch, iso
from pika_pipeline.dispatch.dispatcher import Dispatcher
from pika_pipeline.dispatch.order import WaitingJobs, queue_order
from pika_pipeline.dispatch.slots import Slots
from pika_pipeline.jobs.repository import JobRepository
from pika_pipeline.spend.budget import BudgetGate, BudgetLimits, BudgetLimitsReader
from pika_pipeline.spend.ledger import SpendLedger, day_key, day_of
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.stack

DISPATCHERS = 20
PRICE = Decimal("0.40")


class Sent:
    def __init__(self) -> None:
        self.jobs: list[str] = []
        self._lock = threading.Lock()

    def dispatched(self, job: Any, *, attempt: str, started: float) -> None:
        with self._lock:
            self.jobs.append(job.job_id)


def _dynamodb(endpoint: str) -> Any:
    env = aws_environment(endpoint)
    return boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    ).resource("dynamodb", endpoint_url=endpoint)


def _make_tables(endpoint: str) -> tuple[str, str]:
    resources = load_template()["Resources"]
    dynamodb = _dynamodb(endpoint)
    names = []
    for logical in ("JobsTable", "ControlTable"):
        props = resources[logical]["Properties"]
        name = f"race-{logical}-{uuid.uuid4().hex[:8]}"
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            BillingMode="PAY_PER_REQUEST",
            **{k: v for k, v in props.items() if k == "GlobalSecondaryIndexes"},
        )
        names.append(name)
    return names[0], names[1]


def test_twenty_dispatchers_racing_for_the_last_dollar_send_exactly_two_videos(
    pipeline: Pipeline,
) -> None:
    endpoint = pipeline.info.aws_endpoint
    jobs_name, control_name = _make_tables(endpoint)
    now = datetime.now(UTC).timestamp()
    setup = _dynamodb(endpoint)
    jobs, control = setup.Table(jobs_name), setup.Table(control_name)
    # given: the day has $9.00 of its $10.00 spent, and 20 videos at $0.40 wait
    control.put_item(Item={"pk": day_key(day_of(now)), "reserved_usd": Decimal("9.00")})
    repository = JobRepository(lambda: jobs)
    for n in range(DISPATCHERS):
        job_id, queued_at = f"{n:032x}", iso(now + n / 1000)
        repository.enqueue(
            {"job_id": job_id, "price_usd": PRICE, "batch": "race"},
            lane="normal",
            order=queue_order(n, queued_at, job_id),
            queued_at=queued_at,
        )
    sent = Sent()
    barrier = threading.Barrier(DISPATCHERS)
    dispatched: list[int] = []

    def dispatch() -> None:
        dynamodb = _dynamodb(endpoint)  # one session per process, as each function has
        jobs_table, control_table = dynamodb.Table(jobs_name), dynamodb.Table(control_name)
        dispatcher = Dispatcher(
            slots=Slots(control=lambda: control_table, jobs=lambda: jobs_table, count=40),
            waiting=WaitingJobs(lambda: jobs_table),
            pause=PauseSwitch(lambda: control_table),
            repository=JobRepository(lambda: jobs_table),
            submit=sent,  # type: ignore[arg-type]
            claim_seconds=300,
            reconcile_after_seconds=900,
            budget=BudgetGate(
                limits=BudgetLimitsReader(
                    lambda: control_table,
                    defaults=BudgetLimits(daily_usd=Decimal(10), monthly_usd=Decimal(0)),
                ),
                ledger=SpendLedger(control=lambda: control_table, jobs=lambda: jobs_table),
                jobs=lambda: jobs_table,
                price_of=lambda item: PRICE,
            ),
        )
        barrier.wait()
        dispatched.append(dispatcher.fill())

    # when: 20 dispatchers fill at once
    threads = [threading.Thread(target=dispatch) for _ in range(DISPATCHERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: exactly 2 sent, $0.80 more reserved, never a cent over $10.00
    assert sum(dispatched) == 2 == len(sent.jobs) == len(set(sent.jobs))
    day = control.get_item(Key={"pk": day_key(day_of(now))}, ConsistentRead=True)["Item"]
    assert day["reserved_usd"] == Decimal("9.80")
    reserved = [item for item in jobs.scan(ConsistentRead=True)["Items"] if "reserved_usd" in item]
    assert sorted(str(i["job_id"]) for i in reserved) == sorted(sent.jobs)
