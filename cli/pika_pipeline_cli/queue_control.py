"""The dispatch gate as an operator sees and steers it: waiting jobs, slots at fal, pause, cancel.

Reads and writes the same items as the pipeline's dispatcher (the jobs table's sparse
``QueuedJobs`` index, and the control table's ``dispatch`` and ``slot#N`` items), so it works the
same against a deployed stack and the local stack.
"""

from __future__ import annotations

import getpass
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from pika_pipeline.aws.errors import error_code
from pika_pipeline.dispatch.control import DISPATCH_ITEM, slot_key
from pika_pipeline.dispatch.order import LANES as DISPATCH_LANES
from pika_pipeline.dispatch.order import QUEUED_JOBS_INDEX
from pika_pipeline.dispatch.slots import holds_slot
from pika_pipeline.errors import JobConflict
from pika_pipeline.fal import pika
from pika_pipeline.fal.prices import usd_per_video
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.events import SOURCE, JobEvents
from pika_pipeline.jobs.job import now_iso, plain
from pika_pipeline.jobs.repository import JobRepository
from pika_pipeline.jobs.statuses import AT_FAL_STATUSES, TERMINAL_STATUSES, JobStatus
from pika_pipeline_cli.resources import CliError, Pipeline

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

QUEUED = JobStatus.QUEUED
CANCELLED = JobStatus.CANCELLED
CANCELLED_CODE = ErrorCode.CANCELLED
FINAL_STATUSES = TERMINAL_STATUSES
AT_FAL = AT_FAL_STATUSES

LANES = DISPATCH_LANES  # the dispatch order: a lane only runs when those above are empty
QUEUED_INDEX = QUEUED_JOBS_INDEX
NUDGE = {"source": SOURCE, "detail-type": "Dispatch Requested", "detail": {}}
# How far back finished jobs count towards the measured rate: long enough to smooth a burst of
# webhooks, short enough to follow a change of FalConcurrency within the hour.
RATE_WINDOW = timedelta(minutes=15)
BATCH_GET_LIMIT = 100  # DynamoDB's BatchGetItem limit


@dataclass(frozen=True)
class WaitingJob:
    job_id: str
    lane: str
    batch: str
    queued_at: datetime | None
    source_key: str
    # What the dispatcher will reserve for it (recorded at upload; older jobs: about the price
    # of fal's default video at its endpoint).
    price_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class PauseState:
    paused: bool
    since: datetime | None = None
    by: str | None = None


@dataclass(frozen=True)
class BatchRow:
    lane: str
    batch: str
    waiting: int
    oldest: datetime | None


@dataclass(frozen=True)
class QueueSnapshot:
    waiting: list[WaitingJob]  # in dispatch order
    in_flight: int  # slots held by a job at fal with that slot (FalInFlight)
    concurrency: int
    headroom: int
    pause: PauseState
    rate_per_second: float | None  # measured: jobs leaving fal per second, None when unknown
    # What the tighter of today's and this month's budgets has left; None: no limit.
    budget_left_usd: Decimal | None = None
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def capacity(self) -> int:
        return self.concurrency + self.headroom

    def rows(self) -> list[BatchRow]:
        """Waiting jobs by priority, then batch, in the order they will be dispatched."""
        counts: Counter[tuple[str, str]] = Counter()
        oldest: dict[tuple[str, str], datetime | None] = {}
        for job in self.waiting:
            group = (job.lane, job.batch)
            counts[group] += 1
            if group not in oldest or _earlier(job.queued_at, oldest[group]):
                oldest[group] = job.queued_at
        return [
            BatchRow(lane, batch, n, oldest[(lane, batch)]) for (lane, batch), n in counts.items()
        ]

    def waiting_for_budget(self) -> list[WaitingJob]:
        """The waiting jobs the budget left cannot pay for, however many slots free up: from the
        first whose price, added to those of the jobs ahead of it, does not fit, to the end
        (the dispatcher never lets a job overtake the head of the queue).

        Computed from the budget now rather than read from the jobs' ``waiting_for``: the
        dispatcher marks only the head it stopped at, and a raised budget frees them at once."""
        if self.budget_left_usd is None:
            return []
        ahead = Decimal(0)
        for index, job in enumerate(self.waiting):
            ahead += job.price_usd
            if ahead > self.budget_left_usd:
                return self.waiting[index:]
        return []

    def oldest(self) -> WaitingJob | None:
        dated = [job for job in self.waiting if job.queued_at is not None]
        return min(dated, key=lambda job: job.queued_at or self.taken_at, default=None)

    def drain_seconds(self) -> float | None:
        """How long the jobs waiting now take to be dispatched at the measured rate; unknown
        while paused (nothing leaves) or before any dispatched job has finished recently."""
        if not self.waiting:
            return 0.0
        if self.pause.paused or not self.rate_per_second:
            return None
        return len(self.waiting) / self.rate_per_second

    def as_json(self) -> dict[str, Any]:
        oldest = self.oldest()
        return {
            "paused": self.pause.paused,
            "paused_at": _iso(self.pause.since),
            "paused_by": self.pause.by,
            "waiting": len(self.waiting),
            "waiting_for_budget": len(self.waiting_for_budget()),
            "budget_left_usd": None if self.budget_left_usd is None else str(self.budget_left_usd),
            "by_batch": [
                {
                    "priority": r.lane,
                    "batch": r.batch,
                    "waiting": r.waiting,
                    "oldest": _iso(r.oldest),
                }
                for r in self.rows()
            ],
            "in_flight": self.in_flight,
            "capacity": self.capacity,
            "fal_concurrency": self.concurrency,
            "fal_queue_headroom": self.headroom,
            "oldest_job": oldest.job_id if oldest else None,
            "oldest_queued_at": _iso(oldest.queued_at) if oldest else None,
            "rate_per_second": self.rate_per_second,
            "drain_seconds": self.drain_seconds(),
        }


# --- reading ------------------------------------------------------------------------------------


def snapshot(
    pipeline: Pipeline,
    *,
    rate_per_second: float | None = None,
    budget_left_usd: Decimal | None = None,
) -> QueueSnapshot:
    """The queue now; pass ``rate_per_second`` to reuse a recent measurement (it costs a scan),
    and what the budgets have left (spend.budget_state) to see which jobs wait for budget."""
    concurrency, headroom = capacity(pipeline)
    return QueueSnapshot(
        waiting=list(waiting_jobs(pipeline)),
        in_flight=slots_in_flight(pipeline, concurrency + headroom),
        concurrency=concurrency,
        headroom=headroom,
        pause=pause_state(pipeline),
        rate_per_second=(measured_rate(pipeline) if rate_per_second is None else rate_per_second),
        budget_left_usd=budget_left_usd,
    )


def capacity(pipeline: Pipeline) -> tuple[int, int]:
    """FalConcurrency and FalQueueHeadroom, as the stack was deployed with them."""
    values = []
    for name in ("FalConcurrency", "FalQueueHeadroom"):
        raw = pipeline.output(name)
        try:
            values.append(int(raw))
        except ValueError:
            raise CliError(f"the stack's output {name} is {raw!r}, not a number") from None
    return values[0], values[1]


def waiting_jobs(pipeline: Pipeline, *, batch: str | None = None) -> Iterator[WaitingJob]:
    table = pipeline.table()
    for lane in LANES:
        arguments: dict[str, Any] = {
            "IndexName": QUEUED_INDEX,
            "KeyConditionExpression": Key("queue_lane").eq(lane),
        }
        if batch is not None:
            arguments["FilterExpression"] = Attr("batch").eq(batch)
        for item in _pages(table, "query", arguments):
            yield WaitingJob(
                job_id=str(item["job_id"]),
                lane=lane,
                batch=str(item.get("batch", "")),
                queued_at=parse_time(item.get("queued_at")),
                source_key=str(item.get("source_key", "")),
                price_usd=_price(item),
            )


def slots_in_flight(pipeline: Pipeline, capacity: int) -> int:
    """Slots taken, by the dispatcher's rule: see ``taken_slots``."""
    slots = _batch_get(
        pipeline, pipeline.control_table(), "pk", [slot_key(n) for n in range(capacity)]
    )
    holders = {str(item["holder"]) for item in slots if item.get("holder")}
    jobs = _batch_get(pipeline, pipeline.table(), "job_id", sorted(holders))
    return taken_slots(slots, jobs, capacity)


def taken_slots(slots: list[dict[str, Any]], jobs: list[dict[str, Any]], capacity: int) -> int:
    """Slots whose holder is at fal with that very slot (dispatch/slots.py): a holder that
    ended, waits again (re-queued), or moved to another slot no longer takes it."""
    holder_of = {str(item["pk"]): str(item["holder"]) for item in slots if item.get("holder")}
    job_of = {str(job["job_id"]): job for job in jobs}
    return sum(
        1
        for n in range(capacity)
        if (job := job_of.get(holder_of.get(slot_key(n), ""))) is not None and holds_slot(job, n)
    )


def pause_state(pipeline: Pipeline) -> PauseState:
    item = (
        pipeline.control_table()
        .get_item(Key={"pk": DISPATCH_ITEM}, ConsistentRead=True)
        .get("Item", {})
    )
    return PauseState(
        paused=bool(item.get("paused")),
        since=parse_time(item.get("paused_at")),
        by=str(item["paused_by"]) if item.get("paused_by") else None,
    )


def measured_rate(pipeline: Pipeline) -> float | None:
    """Dispatched jobs finished per second over the last ``RATE_WINDOW``: while work waits, every
    finish frees a slot for the next job, so this is the rate at which the queue drains.

    A scan of the jobs table (there is no index by finish time): cheap for a CLI run, and
    ``queue --watch`` measures it again only every half minute."""
    since = datetime.now(UTC) - RATE_WINDOW
    finishes = sorted(
        moment
        for item in _pages(
            pipeline.table(),
            "scan",
            {
                "FilterExpression": Attr("updated_at").gte(since.isoformat())
                & Attr("dispatched_at").exists()
                & Attr("status").is_in(sorted(str(s) for s in FINAL_STATUSES)),
                "ProjectionExpression": "updated_at",
            },
        )
        if (moment := parse_time(item.get("updated_at"))) is not None
    )
    if len(finishes) < 2 or finishes[-1] <= finishes[0]:
        return None
    return (len(finishes) - 1) / (finishes[-1] - finishes[0]).total_seconds()


def _price(item: dict[str, Any]) -> Decimal:
    if item.get("price_usd") is not None:
        return Decimal(str(item["price_usd"]))
    try:  # a job queued before prices were recorded: the gate prices it at its endpoint
        return usd_per_video(str(item.get("fal_endpoint", pika.ENDPOINT)))
    except KeyError:
        return Decimal(0)


# --- steering -----------------------------------------------------------------------------------


def operator_name(pipeline: Pipeline) -> str:
    """Who is at the keyboard, for the record: the AWS identity, else the local user."""
    try:
        arn = pipeline.session.client(
            "sts", endpoint_url=pipeline.endpoint_url
        ).get_caller_identity()
        return str(arn["Arn"])
    except (ClientError, BotoCoreError):
        return getpass.getuser()


def pause(pipeline: Pipeline, *, by: str) -> PauseState:
    """Stops dispatching; jobs already at fal finish. Pausing a paused pipeline keeps the first
    pause's time (the alarm on long pauses counts from it)."""
    table = pipeline.control_table()
    now = now_iso()
    try:
        table.update_item(
            Key={"pk": DISPATCH_ITEM},
            UpdateExpression="SET paused = :true, paused_at = :now, paused_by = :by",
            ConditionExpression="attribute_not_exists(paused) OR paused = :false",
            ExpressionAttributeValues={":true": True, ":false": False, ":now": now, ":by": by},
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
    return pause_state(pipeline)


def resume(pipeline: Pipeline, *, by: str) -> None:
    """Starts dispatching again, at once: a nudge has the submit function fill free slots now
    rather than when the next job finishes or the reconciler runs."""
    pipeline.control_table().update_item(
        Key={"pk": DISPATCH_ITEM},
        UpdateExpression="SET paused = :false, resumed_at = :now, resumed_by = :by "
        "REMOVE paused_at, paused_by",
        ExpressionAttributeValues={":false": False, ":now": now_iso(), ":by": by},
    )
    nudge(pipeline)


def nudge(pipeline: Pipeline) -> None:
    pipeline.sqs().send_message(
        QueueUrl=pipeline.output("SubmitQueueUrl"), MessageBody=json.dumps(NUDGE)
    )


def cancel_waiting(pipeline: Pipeline, job_id: str, *, by: str) -> dict[str, Any] | None:
    """QUEUED -> CANCELLED and its ``Video Failed`` event; None if the job was no longer waiting
    (dispatched, or cancelled, in the meantime). Nothing was paid: a waiting job never met fal."""
    repository = JobRepository(pipeline.table, control=pipeline.control_table)
    try:
        # Through the repository, so the batch's counters move with the job.
        item = repository.cancel_waiting(
            job_id, by=by, message=f"cancelled by {by} before it was sent to fal; nothing was paid"
        ).item
    except JobConflict:
        return None
    job = dict(item)
    JobEvents(pipeline.events(), pipeline.output("CompletionEventBus")).finished(job)
    return plain(job)  # type: ignore[no-any-return]


def request_fal_cancel(pipeline: Pipeline, job_id: str, *, by: str) -> bool:
    """Asks the reconciler to cancel a job's fal request (it holds the fal key; this CLI does not)
    and to do so at its next run: ``next_check_at`` now puts the job first in its index.
    False if the job is no longer at fal."""
    try:
        pipeline.table().update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET cancel_requested = :true, cancel_requested_at = :now, "
            "cancel_requested_by = :by, next_check_at = :epoch",
            ConditionExpression="#status IN (:pending, :submitted) "
            "AND attribute_exists(open_shard)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":true": True,
                ":now": now_iso(),
                ":by": by,
                ":epoch": int(time.time()),
                ":pending": str(JobStatus.PENDING),
                ":submitted": str(JobStatus.SUBMITTED),
            },
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def run_reconciler_now(pipeline: Pipeline) -> bool:
    """Starts a reconciler run without waiting for it; False where the stack does not say where
    the reconciler is (its schedule then does the cancel)."""
    reconciler = pipeline.reconciler()
    if reconciler is None:
        return False
    client, name = reconciler
    client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    return True


# --- helpers ------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """An ISO time or epoch seconds from a record, as an aware datetime."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (TypeError, ValueError, OverflowError):
            return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _earlier(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a < b)


def _pages(table: Table, operation: str, arguments: dict[str, Any]) -> Iterator[dict[str, Any]]:
    call = table.query if operation == "query" else table.scan
    arguments = dict(arguments)
    while True:
        page = call(**arguments)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _batch_get(
    pipeline: Pipeline, table: Table, key: str, values: list[str]
) -> list[dict[str, Any]]:
    resource = pipeline.session.resource("dynamodb", endpoint_url=pipeline.endpoint_url)
    found: list[dict[str, Any]] = []
    for start in range(0, len(values), BATCH_GET_LIMIT):
        request: dict[str, Any] = {
            table.name: {
                "Keys": [{key: value} for value in values[start : start + BATCH_GET_LIMIT]],
                "ConsistentRead": True,
            }
        }
        while request:
            answer = resource.batch_get_item(RequestItems=request)
            found.extend(answer["Responses"].get(table.name, []))
            request = dict(answer.get("UnprocessedKeys") or {})
            if request:
                time.sleep(0.1)  # throttled: DynamoDB asks to come back for the rest
    return found
