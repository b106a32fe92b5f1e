"""Batch Completed: the reconciler's scheduled run announces each batch that has finished.

A batch is finished when its counters show no open job and no upload has come for it for
BatchQuietSeconds (batches/progress.py decides). Each run reads at most a bounded page of the
batches due for a summary, oldest upload first, from a sparse index; nothing is scanned.

At least once, exactly once when nothing crashes. A run first takes a lease on the batch's next
summary (the batch is still due, still has no open job, has had no upload since it was read, and
holds no live lease): the batch stays due, and the item records the summary number being announced
(``announcing``) and when the lease ends. The lease's answer (a consistent read of the counters at
that moment) is the summary. After the publish, a write conditioned on the lease being still this
run's settles it: the number becomes ``summaries``, and the due mark goes unless something made
the batch due again meanwhile (an upload, a reopened job), in which case a new summary follows.
A failed publish releases the lease for the next run. A run that crashes holding the lease leaves
the batch due: once the lease ends, the next run announces the same summary number, which gives the
webhook the same id (notify/messages.py), so receivers can deduplicate.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError

from pika_pipeline.aws.errors import error_code
from pika_pipeline.batches.progress import (
    DUE,
    DUE_MARKS,
    SUMMARY_DUE_INDEX,
    BatchProgress,
    progress_key,
)
from pika_pipeline.dispatch.control import iso
from pika_pipeline.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from pika_pipeline.jobs.events import JobEvents

# Batches looked at per run, in pages: a run's work stays bounded however many batches are
# open, and batches still running (due, quiet, not finished) hold back at most this many pages.
BATCHES_PER_PAGE = 50
PAGES_PER_RUN = 4
# Above the reconciler's timeout (300 s): a lease ends only once the run holding it is surely over.
SUMMARY_LEASE_SECONDS = 360


class BatchAnnouncer:
    def __init__(
        self,
        *,
        control: Callable[[], Table],
        events: JobEvents,
        quiet_seconds: int,
        clock: Callable[[], float] = time.time,
        limit: int = BATCHES_PER_PAGE,
        pages: int = PAGES_PER_RUN,
        lease_seconds: int = SUMMARY_LEASE_SECONDS,
    ) -> None:
        self._control = control
        self._events = events
        self._quiet_seconds = quiet_seconds
        self._clock = clock
        self._limit = limit
        self._pages = pages
        self._lease_seconds = lease_seconds

    def announce_finished(self, out_of_time: Callable[[], bool] = lambda: False) -> int:
        """Publishes one Batch Completed event per finished batch; returns how many."""
        now = self._clock()
        announced = 0
        start: dict[str, Any] | None = None
        for _ in range(self._pages):
            items, start = self._due(quiet_since=iso(now - self._quiet_seconds), start=start)
            for item in items:
                if out_of_time():
                    return announced
                batch = BatchProgress.from_item(item)
                if _leased(item, now) or not batch.is_finished(
                    now_epoch=now, quiet_seconds=self._quiet_seconds
                ):
                    continue
                announced += self._announce(item, batch)
            if start is None:
                break
        return announced

    def _due(
        self, *, quiet_since: str, start: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """A page of due batches whose last upload is older than ``quiet_since``, oldest first,
        and where the next page starts (None: no more)."""
        arguments: dict[str, Any] = {
            "IndexName": SUMMARY_DUE_INDEX,
            "KeyConditionExpression": Key("summary_due").eq(DUE)
            & Key("last_upload_at").lte(quiet_since),
            "Limit": self._limit,
        }
        if start:
            arguments["ExclusiveStartKey"] = start
        response = self._control().query(**arguments)
        return list(response.get("Items", [])), response.get("LastEvaluatedKey")

    def _announce(self, item: dict[str, Any], batch: BatchProgress) -> int:
        key = {"pk": progress_key(batch.batch)}
        # A summary a crashed or failed run left unannounced keeps its number; else the next one.
        number = int(item.get("announcing") or int(item.get("summaries", 0)) + 1)
        owner = uuid.uuid4().hex
        now = self._clock()
        try:
            claimed = self._control().update_item(
                Key=key,
                UpdateExpression="SET announcing = :number, lease_until = :until, "
                "lease_owner = :owner",
                # The numbers as read: a stale read of the index claims nothing.
                ConditionExpression=Attr("summary_due").eq(DUE)
                & Attr("last_upload_at").eq(batch.last_upload_at)
                & (Attr("open_jobs").not_exists() | Attr("open_jobs").eq(0))
                & (Attr("lease_until").not_exists() | Attr("lease_until").lt(Decimal(str(now))))
                & _as_read(item, "announcing")
                & _as_read(item, "summaries"),
                ExpressionAttributeValues={
                    ":number": number,
                    ":until": Decimal(str(now + self._lease_seconds)),
                    ":owner": owner,
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                # Another run holds or settled it, or a job or an upload came since it was read.
                return 0
            raise
        summary = BatchProgress.from_item(dict(claimed)).summary() | {"summary": number}
        if not self._events.batch_completed(summary):
            # Not announced: the next run tries again at once, with the same number.
            self._if_still_mine(key, owner, UpdateExpression="REMOVE lease_until, lease_owner")
            return 0
        settle = (
            "SET summaries = :number, last_summary_at = :now "
            "REMOVE announcing, lease_until, lease_owner"
        )
        values = {":number": number, ":now": iso(self._clock())}
        settled = self._if_still_mine(
            key,
            owner,
            UpdateExpression=f"{settle}, summary_due",
            ExpressionAttributeValues=values,
            also=_as_read(dict(claimed), DUE_MARKS),
        ) or self._if_still_mine(
            # Made due again while publishing: settled, and due for the next summary.
            key,
            owner,
            UpdateExpression=settle,
            ExpressionAttributeValues=values,
        )
        batch_log = {"batch": batch.batch, "summary": number}
        if not settled:
            # Only if this run outlived its lease: another run may announce the same summary
            # again, under the same webhook id.
            logger.warning("Batch summary's lease ended before it settled", extra=batch_log)
        logger.info("Batch completed", extra=batch_log)
        return 1

    def _if_still_mine(
        self,
        key: dict[str, str],
        owner: str,
        *,
        also: ConditionBase | None = None,
        **update: Any,
    ) -> bool:
        """An update of the batch conditioned on this run's lease (and ``also``); False when the
        condition did not hold."""
        condition: ConditionBase = Attr("lease_owner").eq(owner)
        if also is not None:
            condition = condition & also
        try:
            self._control().update_item(Key=key, ConditionExpression=condition, **update)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _leased(item: dict[str, Any], now: float) -> bool:
    """Another run holds this batch's summary (its lease has not ended)."""
    until = item.get("lease_until")
    return until is not None and float(until) >= now


def _as_read(item: dict[str, Any], attribute: str) -> ConditionBase:
    """``attribute`` still has the value ``item`` shows (or is still absent)."""
    value = item.get(attribute)
    return Attr(attribute).not_exists() if value is None else Attr(attribute).eq(value)
