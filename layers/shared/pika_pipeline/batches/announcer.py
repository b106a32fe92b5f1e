"""Batch Completed: the reconciler's scheduled run announces each batch that has finished.

A batch is finished when its counters show no open job and no upload has come for it for
BatchQuietSeconds (batches/progress.py decides). Each run reads at most a bounded page of the
batches due for a summary, oldest upload first, from a sparse index; nothing is scanned.

Exactly one announcement per quiet period: a conditional write claims it first (the batch is still
due, still has no open job, and has had no upload since it was read), so two runs never both
announce, and a later upload makes the batch due again for a new summary. The claim's answer (a
consistent read of the counters at that moment) is the summary. If publishing fails the batch is
made due again for the next run; a crash between the claim and the publish loses that summary
(the counters stay, and ``pika-pipeline batch`` shows them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from pika_pipeline.aws.errors import error_code
from pika_pipeline.batches.progress import DUE, SUMMARY_DUE_INDEX, BatchProgress, progress_key
from pika_pipeline.dispatch.control import iso
from pika_pipeline.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from pika_pipeline.jobs.events import JobEvents

# Batches looked at per run, in pages: a run's work stays bounded however many batches are
# open, and batches still running (due, quiet, not finished) hold back at most this many pages.
BATCHES_PER_PAGE = 50
PAGES_PER_RUN = 4


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
    ) -> None:
        self._control = control
        self._events = events
        self._quiet_seconds = quiet_seconds
        self._clock = clock
        self._limit = limit
        self._pages = pages

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
                if batch.is_finished(now_epoch=now, quiet_seconds=self._quiet_seconds):
                    announced += self._announce(batch)
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

    def _announce(self, batch: BatchProgress) -> int:
        key = {"pk": progress_key(batch.batch)}
        try:
            claimed = self._control().update_item(
                Key=key,
                UpdateExpression="SET summaries = if_not_exists(summaries, :zero) + :one, "
                "last_summary_at = :now REMOVE summary_due",
                ConditionExpression=Attr("summary_due").eq(DUE)
                & Attr("last_upload_at").eq(batch.last_upload_at)
                & (Attr("open_jobs").not_exists() | Attr("open_jobs").eq(0)),
                ExpressionAttributeValues={":zero": 0, ":one": 1, ":now": iso(self._clock())},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                # Another run announced it, or a job or an upload came since it was read.
                return 0
            raise
        summary = BatchProgress.from_item(dict(claimed)).summary()
        if self._events.batch_completed(summary):
            logger.info("Batch completed", extra={"batch": batch.batch})
            return 1
        # Not announced: due again, for the next run (unless an upload already made it so).
        self._control().update_item(
            Key=key,
            UpdateExpression="SET summary_due = :due, summaries = summaries - :one",
            ConditionExpression=Attr("summary_due").not_exists()
            & Attr("summaries").eq(claimed["summaries"]),
            ExpressionAttributeValues={":due": DUE, ":one": 1},
        )
        return 0
