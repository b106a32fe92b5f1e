"""fal capacity as slots derived from the job table: crash-safe, never leaked, never doubled.

``slot#0`` .. ``slot#<N-1>`` (N = FalConcurrency + FalQueueHeadroom) in the control table each
name their holder. A slot is free when it has no holder, or when its holder is not at fal with
it any more (final, gone, waiting again, or moved to another slot). Nobody releases a slot: a job
frees it by ending, whoever ends it and even if that process crashes right after. Taking one is
a single TransactWriteItems with the job's QUEUED -> PENDING claim, so a crash anywhere leaves
either a waiting job and a free slot, or a PENDING claim holding the slot, which the reconciler
resubmits once the claim runs out (exactly as it does for a crashed submit).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pika_pipeline.aws.errors import cancellation_reasons, error_code
from pika_pipeline.batches import progress
from pika_pipeline.dispatch.control import clock_key, iso, slot_key
from pika_pipeline.dispatch.order import rank_of
from pika_pipeline.errors import JobStoreBusy
from pika_pipeline.jobs.open_jobs import open_shard
from pika_pipeline.jobs.statuses import AT_FAL_STATUSES, JobStatus
from pika_pipeline.jobs.store_errors import RETRY_LATER_CODES

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from pika_pipeline.dispatch.order import WaitingJob
    from pika_pipeline.spend.budget import Reservation


# Concurrent slot transactions that share an item (the budget's counters, a lane's clock) may
# cancel each other (TransactionConflict): DynamoDB serialises nothing for us, so try again.
CONFLICT_TRIES = 4


class SlotLost(Exception):
    """Another dispatcher took the slot first (or its holder is still at fal): try the next."""


class BudgetLost(Exception):
    """The budget's condition failed: the job's price no longer fits (another dispatcher
    reserved the rest). The job waits."""


class JobLost(Exception):
    """Another dispatcher took the job first (or it was cancelled): try the next job."""


@dataclass(frozen=True)
class Slot:
    number: int
    holder: str | None
    # When the previous holder ended (its last update): where DispatchLatency starts.
    freed_at: float | None


@dataclass(frozen=True)
class Claim:
    """What the slot transaction wrote on the job."""

    attempt: str
    dispatched_at: str


@dataclass(frozen=True)
class SlotView:
    free: list[Slot]
    in_flight: int  # slots held by a job at fal (FalInFlight)
    # Other control items read along with the slots (``view(also=...)``), by key; absent: none.
    also: dict[str, dict[str, Any]] = field(default_factory=dict)


class Slots:
    def __init__(
        self,
        *,
        control: Callable[[], Table],
        jobs: Callable[[], Table],
        count: int,
        retention_days: int = 0,
    ) -> None:
        self._control = control
        self._jobs = jobs
        self._count = count
        self._retention_seconds = retention_days * 86400

    @property
    def count(self) -> int:
        return self._count

    def view(self, *, also: tuple[str, ...] = ()) -> SlotView:
        """Which slots are free now (consistent reads: two BatchGetItems, at most 100 slots).

        ``also``: other control items to read in the same call (the operator's pause switch and
        budget: a fill needs them too, and they cost nothing more here)."""
        keys = [{"pk": key} for key in also] + [{"pk": slot_key(n)} for n in range(self._count)]
        items = {str(i["pk"]): i for i in self._batch_get(self._control(), keys)}
        extra = {key: dict(items.pop(key)) for key in also if key in items}
        holders = {str(i.get("holder")) for i in items.values() if i.get("holder")}
        jobs = {
            str(j["job_id"]): j
            for j in self._batch_get(self._jobs(), [{"job_id": h} for h in sorted(holders)])
        }
        free: list[Slot] = []
        for n in range(self._count):
            item = items.get(slot_key(n), {})
            holder = str(item["holder"]) if item.get("holder") else None
            job = jobs.get(holder) if holder else None
            if holder is None or job is None or not holds_slot(job, n):
                freed_at = _epoch(job.get("updated_at")) if job else None
                free.append(Slot(number=n, holder=holder, freed_at=freed_at))
        return SlotView(free=free, in_flight=self._count - len(free), also=extra)

    def take(
        self,
        slot: Slot,
        job: WaitingJob,
        *,
        attempt: str,
        now_epoch: float,
        claim_seconds: int,
        reconcile_after_seconds: int,
        reservation: Reservation | None = None,
        move_clock: bool = False,
    ) -> Claim:
        """Takes ``slot`` for ``job`` and claims the job (QUEUED -> PENDING) in one transaction.

        With a ``reservation``, the job's price is reserved against the budgets in the same
        transaction (the job's ledger entry and the day's and month's counters); the job's
        batch counts it at fal instead of waiting in it too.
        Raises SlotLost or JobLost when another dispatcher won that part of the race, and
        BudgetLost when the price no longer fits.

        ``move_clock``: the same transaction moves the job's lane clock up to its rank (fair
        share), sparing an UpdateItem per job; see ``_clock_move``.
        """
        now = iso(now_epoch)
        items: list[dict[str, Any]] = []
        if slot.holder:
            items.append(
                {
                    "ConditionCheck": {
                        "TableName": self._jobs().name,
                        "Key": {"job_id": slot.holder},
                        "ConditionExpression": "attribute_not_exists(job_id) OR NOT (#s IN "
                        "(:pending, :submitted)) OR attribute_not_exists(#slot) OR #slot <> :n",
                        "ExpressionAttributeNames": {"#s": "status", "#slot": "slot"},
                        "ExpressionAttributeValues": {
                            ":pending": str(JobStatus.PENDING),
                            ":submitted": str(JobStatus.SUBMITTED),
                            ":n": slot.number,
                        },
                    }
                }
            )
        slot_update: dict[str, Any] = {
            "TableName": self._control().name,
            "Key": {"pk": slot_key(slot.number)},
            # ``dispatched``: the count the measured dispatch rate comes from (dispatched_total).
            "UpdateExpression": "SET holder = :job, taken_at = :now ADD dispatched :one",
            "ExpressionAttributeValues": {":job": job.job_id, ":now": now, ":one": 1},
        }
        if slot.holder:
            slot_update["ConditionExpression"] = "holder = :previous"
            slot_update["ExpressionAttributeValues"][":previous"] = slot.holder
        else:
            slot_update["ConditionExpression"] = "attribute_not_exists(holder)"
        items.append({"Update": slot_update})
        values: dict[str, Any] = {
            ":queued": str(JobStatus.QUEUED),
            ":pending": str(JobStatus.PENDING),
            ":claim": int(now_epoch) + claim_seconds,
            ":shard": open_shard(job.job_id),
            ":check": int(now_epoch) + reconcile_after_seconds,
            ":now": now,
            ":n": slot.number,
            ":attempt": {attempt},
        }
        sets = (
            "#s = :pending, claim_expires_at = :claim, open_shard = :shard, "
            "next_check_at = :check, dispatched_at = :now, updated_at = :now, #slot = :n"
        )
        if self._retention_seconds:
            # Retention counts from dispatch: a job may wait in the queue longer than it.
            sets += ", expires_at = :expires"
            values[":expires"] = int(now_epoch) + self._retention_seconds
        # A job counted by where it is moves from its batch's ``queued`` to ``at_fal`` here,
        # in the transaction it already takes its slot with (batches/progress.py). The index
        # projects the whole job, so its batch and mark are known without reading it; the
        # condition checks the mark as read.
        counted_open = bool(job.item.get(progress.COUNTED_OPEN)) and "batch" in job.item
        condition = "#s = :queued AND " + (
            "attribute_exists(#open)" if counted_open else "attribute_not_exists(#open)"
        )
        removes = ""
        if reservation is not None:
            for name, value in reservation.job_fields().items():
                sets += f", {name} = :{name}"
                values[f":{name}"] = value
            removes = ", waiting_for"
        job_index = len(items)
        items.append(
            {
                "Update": {
                    "TableName": self._jobs().name,
                    "Key": {"job_id": job.job_id},
                    "UpdateExpression": f"SET {sets} ADD open_attempts :attempt "
                    "REMOVE queue_lane, queue_order, queue_position, estimated_start_at" + removes,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {
                        "#s": "status",
                        "#slot": "slot",
                        "#open": progress.COUNTED_OPEN,
                    },
                    "ExpressionAttributeValues": values,
                }
            }
        )
        if reservation is not None:
            items.extend(reservation.counter_updates(self._control().name))
        if counted_open:
            # Unconditional: never a ConditionalCheckFailed, so the reasons' indexes below hold.
            items.append(
                progress.dispatched(str(job.item["batch"])).transact_item(
                    self._control().name, now=now
                )
            )
        clock = self._clock_move(job) if move_clock else None
        conflicts = 0
        while True:
            try:
                # Plain values, not AttributeValues: the resource's client serialises them.
                sent = items + ([clock] if clock else [])
                self._control().meta.client.transact_write_items(TransactItems=sent)  # type: ignore[arg-type]
                break
            except ClientError as exc:
                code = error_code(exc)
                if code in RETRY_LATER_CODES:
                    raise JobStoreBusy(f"taking slot {slot.number}: {code}") from exc
                if code != "TransactionCanceledException":
                    raise
                reasons = cancellation_reasons(exc)
                failed = {i for i, r in enumerate(reasons) if r == "ConditionalCheckFailed"}
                if clock is not None and failed == {len(items)}:
                    # Only the lane's clock was already past this rank (another dispatcher
                    # moved it): take the slot without moving it.
                    clock = None
                    continue
                failed.discard(len(items))
                if job_index in failed:
                    raise JobLost(job.job_id) from exc
                if failed and min(failed) > job_index:  # only the budget's counters
                    raise BudgetLost(job.job_id) from exc
                conflicts += "TransactionConflict" in reasons
                if not failed and "TransactionConflict" in reasons and conflicts < CONFLICT_TRIES:
                    time.sleep(random.uniform(0.01, 0.05))
                    continue
                raise SlotLost(str(slot.number)) from exc
        return Claim(attempt=attempt, dispatched_at=now)

    def _clock_move(self, job: WaitingJob) -> dict[str, Any]:
        """The lane's clock moves up to the job's rank, never down: a fill moves it with its
        highest-ranked job only (concurrent transactions on one item would cancel each other),
        and a clock left a little behind only shifts fairness a little. A clock already at the
        rank passes: new batches arriving together share a rank (order.py), and each of their
        fills would otherwise pay the transaction twice."""
        return {
            "Update": {
                "TableName": self._control().name,
                "Key": {"pk": clock_key(job.lane)},
                "UpdateExpression": "SET #rank = :rank",
                "ConditionExpression": "attribute_not_exists(#rank) OR #rank <= :rank",
                "ExpressionAttributeNames": {"#rank": "rank"},
                "ExpressionAttributeValues": {":rank": rank_of(job.order)},
            }
        }

    def dispatched_total(self) -> int:
        """Jobs dispatched so far, over all slots (one read): the measured dispatch rate.
        Slots beyond today's count (FalConcurrency lowered) are no longer counted: the rate
        reads 0 for one reconciler run, then is right again."""
        keys = [{"pk": slot_key(n)} for n in range(self._count)]
        return sum(int(str(i.get("dispatched", 0))) for i in self._batch_get(self._control(), keys))

    @staticmethod
    def _batch_get(table: Table, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        client = table.meta.client
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                table.name: {"Keys": keys[start : start + 100], "ConsistentRead": True}
            }
            while request:
                response = client.batch_get_item(RequestItems=request)
                found.extend(response.get("Responses", {}).get(table.name, []))
                request = response.get("UnprocessedKeys") or {}
        return found


def holds_slot(job: dict[str, Any], number: int) -> bool:
    """Whether the job is at fal with this slot (it may have ended, waits again, or moved to
    another): what makes a slot taken, for the dispatcher and for ``pika-pipeline queue``."""
    return job.get("status") in AT_FAL_STATUSES and int(job.get("slot", -1)) == number


def _epoch(value: Any) -> float | None:
    return datetime.fromisoformat(str(value)).timestamp() if value else None
