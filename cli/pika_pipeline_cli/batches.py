"""``pika-pipeline batch`` and ``batches``: a batch's live counters, read from its progress item.

One consistent GetItem per look at a batch, one bounded Query of the BatchesByActivity index for
the list: the counters are kept by the pipeline on every transition, so nothing is scanned here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from pika_pipeline.batches.progress import ACTIVITY_INDEX, LISTED, BatchProgress, progress_key
from pika_pipeline_cli.resources import CliError

if TYPE_CHECKING:
    from pika_pipeline_cli.resources import Pipeline

RECENT_BATCHES = 20


def batch_progress(pipeline: Pipeline, name: str) -> BatchProgress:
    item = (
        pipeline.control_table()
        .get_item(Key={"pk": progress_key(name)}, ConsistentRead=True)
        .get("Item")
    )
    if not item:
        raise CliError(f"no batch named {name!r} (`pika-pipeline batches` lists them)")
    return BatchProgress.from_item(dict(item))


def recent_batches(pipeline: Pipeline, *, limit: int = RECENT_BATCHES) -> list[BatchProgress]:
    """The batches with the latest activity first (one page of the index)."""
    response = pipeline.control_table().query(
        IndexName=ACTIVITY_INDEX,
        KeyConditionExpression=Key("listed").eq(LISTED),
        ScanIndexForward=False,
        Limit=limit,
    )
    return [BatchProgress.from_item(dict(item)) for item in response.get("Items", [])]


def as_json(batch: BatchProgress, *, now_epoch: float | None = None) -> dict[str, Any]:
    now = time.time() if now_epoch is None else now_epoch
    return {
        "batch": batch.batch,
        "jobs": batch.jobs,
        "open": batch.open_jobs,  # waiting + at_fal (+ jobs counted before they were told apart)
        "waiting": batch.queued,
        "at_fal": batch.at_fal,
        "finished": batch.finished_jobs,
        "counts": batch.statuses,
        "failures": batch.failures,
        "spent_usd": str(batch.spent_usd),
        "first_upload_at": batch.first_upload_at,
        "last_upload_at": batch.last_upload_at,
        "last_activity_at": batch.last_activity_at,
        "completed": not batch.summary_due and batch.summaries > 0,
        "summaries": batch.summaries,
        # The summary a reconciler run is announcing right now (its lease holds), else null.
        "summary_being_announced": batch.being_announced(now_epoch=now),
    }
