"""Completion events on EventBridge, so integrations subscribe instead of polling the table.

Source ``pika-pipeline``; detail types ``Video Completed`` and ``Video Failed`` (fal failed, or the
upload was rejected), and ``Batch Completed`` (a batch's summary: batches/announcer.py).
Publishing happens after the status change is stored; a publishing error is logged and counted
but never undoes the job (the table stays the source of truth). The write that stored the final
status also marked the event as owed, so the reconciler publishes it again until the notifier has
it (jobs/event_outbox.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pika_pipeline.jobs.job import Job, plain
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.observability import Metric, count, logger

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient

SOURCE = "pika-pipeline"
COMPLETED = "Video Completed"
FAILED = "Video Failed"
BATCH_COMPLETED = "Batch Completed"


def event_detail(item: dict[str, Any]) -> dict[str, Any]:
    """The event's detail: the job, where it came from, where its video is, or why it failed."""
    video = None
    if item.get("output_key"):
        video = {
            "bucket": item.get("output_bucket"),
            "key": item.get("output_key"),
            "bytes": item.get("video_bytes"),
        }
    error = None
    if item.get("error_code"):
        error = {"code": item["error_code"], "message": item.get("error_message", "")}
    detail: dict[str, Any] = plain(
        {
            "job_id": item["job_id"],
            "status": item["status"],
            # The uploader's own reference (``correlation-id`` metadata): integrations map the
            # result back with it, without parsing keys or reading the table.
            "correlation_id": item.get("correlation_id"),
            # The batch the job counts in (metadata, else the first folder under the prefix).
            "batch": item.get("batch"),
            "source": {
                "bucket": item.get("source_bucket"),
                "key": item.get("source_key"),
                "version": item.get("source_version"),
            },
            "video": video,
            "fal_request_id": item.get("completed_request_id") or item.get("request_id"),
            "generation_seconds": item.get("generation_seconds"),
            "prompt": item.get("prompt"),
            "error": error,
            "finished_at": item.get("updated_at"),
            # Where the notifier also delivers this job's webhook (fed only from these events).
            # Not a secret: callbacks carry no query string or userinfo (notify/callbacks.py).
            "callback_url": item.get("callback_url"),
        }
    )
    return detail


class JobEvents:
    def __init__(self, events: EventBridgeClient, bus_name: str) -> None:
        self._events = events
        self._bus_name = bus_name

    def finished(self, job: Job | dict[str, Any]) -> bool:
        """Publishes the job's Video event; False when it could not (logged, counted: the job's
        mark makes the reconciler publish it later)."""
        item = job.item if isinstance(job, Job) else job
        detail_type = COMPLETED if item["status"] == JobStatus.COMPLETED else FAILED
        try:
            response = self._events.put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": detail_type,
                        "Detail": json.dumps(event_detail(item)),
                        "EventBusName": self._bus_name,
                        "Resources": [],
                    }
                ]
            )
            if response.get("FailedEntryCount"):
                raise RuntimeError(str(response.get("Entries")))
        except Exception as exc:  # never fail a stored result because the announcement failed
            logger.error("Could not publish the job's event", extra={"reason": str(exc)})
            count(Metric.EVENTS_NOT_PUBLISHED)
            return False
        return True

    def batch_completed(self, summary: dict[str, Any]) -> bool:
        """Publishes a batch's summary; False when it could not be published (logged, counted:
        the caller makes the batch due again)."""
        try:
            response = self._events.put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": BATCH_COMPLETED,
                        "Detail": json.dumps(summary),
                        "EventBusName": self._bus_name,
                        "Resources": [],
                    }
                ]
            )
            if response.get("FailedEntryCount"):
                raise RuntimeError(str(response.get("Entries")))
        except Exception as exc:
            logger.error("Could not publish the batch's event", extra={"reason": str(exc)})
            count(Metric.EVENTS_NOT_PUBLISHED)
            return False
        return True
