"""The order waiting jobs leave in: priority lanes, fair share between batches, then FIFO.

Start-time fair queuing by rank: the k-th job of a batch gets rank
``max(batch_last_rank + 1, lane_clock + 1)``, where the lane clock is the highest rank dispatched
in the lane so far. Batches interleave round-robin, a batch arriving late starts at the lane's
current clock, and a single image dropped beside a waiting 5,000-image batch gets the next rank.
A slightly stale clock shifts fairness a little, never correctness (the slots are the gate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from pika_pipeline.aws.errors import error_code
from pika_pipeline.dispatch.control import batch_key, clock_key
from pika_pipeline.jobs.expressions import Update

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

QUEUED_JOBS_INDEX = "QueuedJobs"
# Dispatch order: every high job before any normal one, every normal before any low.
LANES = ("high", "normal", "low")
DEFAULT_LANE = "normal"
RANK_DIGITS = 12


def queue_order(rank: int, queued_at: str, job_id: str) -> str:
    """The QueuedJobs sort key: rank first (fair share), then upload time (FIFO), then id."""
    return f"{rank:0{RANK_DIGITS}d}#{queued_at}#{job_id}"


def rank_of(order: str) -> int:
    return int(order.split("#", 1)[0])


def queued_at_of(order: str) -> str:
    return order.split("#")[1]


def batch_of(key: str, *, input_prefix: str, metadata_batch: str | None) -> str:
    """The ``batch`` metadata if given, else the first folder under the input prefix ("" for a
    file directly under it: its own batch of files without a folder)."""
    if metadata_batch:
        return metadata_batch
    rest = key.removeprefix(input_prefix)
    folder, separator, _ = rest.partition("/")
    return folder if separator else ""


@dataclass(frozen=True)
class WaitingJob:
    job_id: str
    lane: str
    order: str
    # What the dispatcher will reserve for it; None for a job queued before prices were recorded.
    price_usd: Decimal | None = None
    # The whole job as the index holds it (its projection is ALL): what dispatch needs to price
    # and submit it was written when it was queued and does not change while it waits, so
    # dispatch reads the job no further (the slot transaction checks it is still QUEUED).
    item: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def queued_at(self) -> str:
        return queued_at_of(self.order)


class FairShare:
    """Ranks for new waiting jobs, from the lanes' clocks kept in the control table (the slot
    transaction moves a lane's clock as it dispatches: Slots.take ``move_clock``)."""

    def __init__(self, control: Callable[[], Table]) -> None:
        self._control = control

    def lane_clock(self, lane: str) -> int:
        item = (
            self._control().get_item(Key={"pk": clock_key(lane)}, ConsistentRead=True).get("Item")
        )
        return int(str(item.get("rank", 0))) if item else 0

    def next_rank(self, lane: str, batch: str) -> int:
        """The rank of the batch's next job: one conditional write for a new batch or one at or
        ahead of the lane's clock, a second only for a batch left behind; retried on a race."""
        clock = self.lane_clock(lane)
        key = {"pk": batch_key(lane, batch)}
        for _ in range(10):
            try:
                # A new batch starts at the clock: ``if_not_exists`` spares it the second write
                # (every single image is a new batch of its own).
                attrs = self._control().update_item(
                    Key=key,
                    UpdateExpression="SET #last = if_not_exists(#last, :clock) + :one",
                    ConditionExpression=Attr("last_rank").not_exists()
                    | Attr("last_rank").gte(clock),
                    ExpressionAttributeNames={"#last": "last_rank"},
                    ExpressionAttributeValues={":clock": clock, ":one": 1},
                    ReturnValues="UPDATED_NEW",
                )["Attributes"]
                return int(str(attrs["last_rank"]))
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
            try:  # the batch is behind the lane (idle while others ran): join the clock
                self._control().update_item(
                    Key=key,
                    ConditionExpression=Attr("last_rank").lt(clock),
                    **Update().set("last_rank", clock + 1).arguments(),
                )
                return clock + 1
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
        raise RuntimeError(f"could not rank a job of batch {batch!r} (too much contention)")


class WaitingJobs:
    """The QUEUED jobs, from the sparse QueuedJobs index, in dispatch order."""

    def __init__(self, jobs: Callable[[], Table]) -> None:
        self._jobs = jobs
        # Whether the last head() found at least as many jobs as it wanted: then the queue is
        # long (a bulk drop) and the next head() reads the lanes at once, without first trying
        # to read the whole queue in one Scan that would come back too long to use.
        self._backlog = False

    def head(self, count: int, *, skip: frozenset[str] = frozenset()) -> list[WaitingJob]:
        """Up to ``count`` jobs to dispatch next, in dispatch order, leaving out ``skip``.

        One call in the common cases: a short queue (an idle pipeline, a completion's nudge that
        finds nothing waiting) is read whole by one Scan of the sparse index and sorted here; a
        long one by a Query of the first lane that has enough (a Scan's order is not ours, so
        it cannot pick the head of a long queue).
        """
        if count <= 0:
            return []
        wanted = count + len(skip)
        if not self._backlog:
            whole = self._whole_queue(wanted)
            if whole is not None:
                return [job for job in whole if job.job_id not in skip][:count]
        found: list[WaitingJob] = []
        for lane in LANES:
            for job in self._lane_head(lane, wanted - len(found)):
                found.append(job)
            if len(found) >= wanted:
                break
        self._backlog = len(found) >= wanted
        return [job for job in found if job.job_id not in skip][:count]

    def _whole_queue(self, at_most: int) -> list[WaitingJob] | None:
        """Every waiting job, in dispatch order, if there are at most ``at_most``; else None."""
        response = self._jobs().scan(IndexName=QUEUED_JOBS_INDEX, Limit=at_most + 1)
        items = response.get("Items", [])
        if len(items) > at_most or "LastEvaluatedKey" in response:
            self._backlog = True
            return None
        return sorted(
            (_waiting(item) for item in items), key=lambda job: (LANES.index(job.lane), job.order)
        )

    def _lane_head(self, lane: str, count: int) -> list[WaitingJob]:
        arguments: dict[str, Any] = {
            "IndexName": QUEUED_JOBS_INDEX,
            "KeyConditionExpression": Key("queue_lane").eq(lane),
            "Limit": count,
        }
        found: list[WaitingJob] = []
        while len(found) < count:
            response = self._jobs().query(**arguments)
            found.extend(_waiting(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            arguments["Limit"] = count - len(found)
        return found[:count]

    def first(self, *, skip: frozenset[str] = frozenset()) -> WaitingJob | None:
        """The next job to dispatch, leaving out ``skip`` (jobs another dispatcher just took)."""
        for lane in LANES:
            response = self._jobs().query(
                IndexName=QUEUED_JOBS_INDEX,
                KeyConditionExpression=Key("queue_lane").eq(lane),
                Limit=len(skip) + 1,
            )
            for item in response.get("Items", []):
                job = _waiting(item)
                if job.job_id not in skip:
                    return job
        return None

    def all(self) -> Iterator[WaitingJob]:
        """Every waiting job in dispatch order (the reconciler's gauges and positions)."""
        for lane in LANES:
            arguments: dict[str, Any] = {
                "IndexName": QUEUED_JOBS_INDEX,
                "KeyConditionExpression": Key("queue_lane").eq(lane),
            }
            while True:
                response = self._jobs().query(**arguments)
                for item in response.get("Items", []):
                    yield _waiting(item)
                if "LastEvaluatedKey" not in response:
                    break
                arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _waiting(item: dict[str, Any]) -> WaitingJob:
    return WaitingJob(
        job_id=str(item["job_id"]),
        lane=str(item["queue_lane"]),
        order=str(item["queue_order"]),
        price_usd=Decimal(str(item["price_usd"])) if "price_usd" in item else None,
        item=dict(item),
    )
