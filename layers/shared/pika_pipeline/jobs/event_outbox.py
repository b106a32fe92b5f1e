"""The outbox of job events: a final job owes its ``Video Completed``/``Video Failed`` event until
the notifier has seen it, so no kill or failed PutEvents leaves a job without its webhook.

The write that makes a job final also marks it (``event_due``, a shard, and ``event_due_at``, when
the event became due): the mark rides in a write that happens anyway, so no path gains a call.
The notifier, which receives every job event, acknowledges by removing the mark. The reconciler
republishes what is still marked ``EventGraceSeconds`` after it became due, from the sparse
``EventsDue`` index (never a scan), and waits twice as long after each republish.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from pika_pipeline.errors import JobConflict
from pika_pipeline.jobs.expressions import Update
from pika_pipeline.jobs.job import Job
from pika_pipeline.jobs.store_errors import jobs_table_errors

if TYPE_CHECKING:
    from boto3.dynamodb.conditions import ConditionBase
    from mypy_boto3_dynamodb.service_resource import Table

EVENTS_DUE_INDEX = "EventsDue"
EVENT_DUE = "event_due"
EVENT_DUE_AT = "event_due_at"
# How often the reconciler republished the job's event since its final write.
EVENT_REPUBLISHED = "event_republished"
# Spreads the marks over a few index partitions, as OpenJobs does.
EVENT_SHARDS = 4


def event_shard(job_id: str) -> str:
    # Any job id, not only the pipeline's hex digests: a final write must never fail on it.
    return f"event-{zlib.crc32(job_id.encode()) % EVENT_SHARDS}"


def mark_event_due(update: Update, job_id: str, *, now_epoch: int) -> Update:
    """Adds the mark to a final write: the job owes its event from now on. A job finished again
    (FAILED, then COMPLETED by a late result) owes the new event, with a fresh count."""
    return (
        update.set(EVENT_DUE, event_shard(job_id))
        .set(EVENT_DUE_AT, now_epoch)
        .remove(EVENT_REPUBLISHED)
    )


def event_due_attributes(job_id: str, *, now_epoch: int) -> dict[str, Any]:
    """The mark as attributes of an item written whole (a rejection's put)."""
    return {EVENT_DUE: event_shard(job_id), EVENT_DUE_AT: now_epoch}


def clear_event_due(update: Update) -> Update:
    """A job leaving its final status (FAILED, re-queued) owes no event any more."""
    return update.remove(EVENT_DUE, EVENT_DUE_AT, EVENT_REPUBLISHED)


class EventOutbox:
    """The marks, as the reconciler and the notifier see them."""

    def __init__(self, table: Callable[[], Table]) -> None:
        # A factory, not a Table: boto3 resources must not be shared between threads.
        self._table_for_thread = table

    def due(self, *, before_epoch: int, limit: int) -> list[Job]:
        """Jobs whose event became due at or before ``before_epoch`` and was never
        acknowledged, oldest first within each shard."""
        jobs: list[Job] = []
        for shard in range(EVENT_SHARDS):
            if len(jobs) >= limit:
                break
            with jobs_table_errors("reading the events due"):
                response = self._table_for_thread().query(
                    IndexName=EVENTS_DUE_INDEX,
                    KeyConditionExpression=Key(EVENT_DUE).eq(f"event-{shard}")
                    & Key(EVENT_DUE_AT).lte(before_epoch),
                    Limit=limit - len(jobs),
                )
            jobs.extend(Job(item) for item in response.get("Items", []))
        return jobs

    def postpone(self, job: Job, *, until_epoch: int) -> Job:
        """Takes the republishing of ``job``'s event (as the index showed it) and makes the mark
        due again at ``until_epoch``, one republish more; returns the job as the table has it
        (the index may lag behind). Raises JobConflict when the mark moved meanwhile
        (acknowledged, another run took it, or the job finished anew): publish nothing then."""
        update = Update().set(EVENT_DUE_AT, until_epoch).add(EVENT_REPUBLISHED, 1)
        with jobs_table_errors(f"job {job.job_id}'s event is no longer due"):
            attrs = self._table_for_thread().update_item(
                Key={"job_id": job.job_id},
                ConditionExpression=self._unchanged(job),
                ReturnValues="ALL_NEW",
                **update.arguments(),
            )["Attributes"]
        return Job(attrs)

    def abandon(self, job: Job) -> None:
        """Removes a mark the notifier never acknowledged however often it was republished.
        Raises JobConflict when the mark moved meanwhile."""
        with jobs_table_errors(f"job {job.job_id}'s event is no longer due"):
            self._table_for_thread().update_item(
                Key={"job_id": job.job_id},
                ConditionExpression=self._unchanged(job),
                **clear_event_due(Update()).arguments(),
            )

    def acknowledge(self, job_id: str, status: str) -> bool:
        """The notifier has the job's event for ``status``: the mark goes. False when there was
        nothing to acknowledge (done already, or the job has finished anew since that event,
        whose own mark stays)."""
        try:
            with jobs_table_errors(f"job {job_id} owes no {status} event"):
                self._table_for_thread().update_item(
                    Key={"job_id": job_id},
                    ConditionExpression=Attr(EVENT_DUE).exists() & Attr("status").eq(status),
                    **clear_event_due(Update()).arguments(),
                )
        except JobConflict:
            return False
        return True

    @staticmethod
    def _unchanged(job: Job) -> ConditionBase:
        return Attr(EVENT_DUE_AT).eq(job.item.get(EVENT_DUE_AT)) & Attr("status").eq(
            str(job.item.get("status"))
        )
