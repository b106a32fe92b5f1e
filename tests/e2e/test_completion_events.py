"""Integrations downstream subscribe to EventBridge instead of polling the jobs table."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.pipeline import Pipeline, eventually


def test_a_finished_video_is_announced_with_where_it_is(pipeline: Pipeline) -> None:
    queue = pipeline.subscribe()

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "announce me", "duration": "1"}))
    (event,) = pipeline.events_for(queue, job["job_id"])

    assert event["source"] == "pika-pipeline"
    assert event["detail-type"] == "Video Completed"
    detail = event["detail"]
    assert detail["status"] == "COMPLETED"
    assert detail["source"] == {
        "bucket": job["source_bucket"],
        "key": job["source_key"],
        "version": job["source_version"],
    }
    assert detail["video"] == {
        "bucket": job["output_bucket"],
        "key": job["output_key"],
        "bytes": int(job["video_bytes"]),
    }
    assert detail["fal_request_id"] == job["request_id"]
    assert detail["generation_seconds"] >= 0
    assert detail["error"] is None


def test_a_failed_video_is_announced_with_fals_reason(pipeline: Pipeline) -> None:
    queue = pipeline.subscribe()
    pipeline.fal_faults(outcome=["validation_error"])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "refused", "duration": "1"}))
    (event,) = pipeline.events_for(queue, job["job_id"])

    assert event["detail-type"] == "Video Failed"
    assert event["detail"]["status"] == "FAILED"
    assert event["detail"]["error"]["code"] == "fal_validation"
    assert event["detail"]["video"] is None


def test_a_rejected_upload_is_announced_as_failed(pipeline: Pipeline) -> None:
    queue = pipeline.subscribe()

    job = pipeline.wait_for_job(pipeline.upload({}))
    (event,) = pipeline.events_for(queue, job["job_id"])

    assert event["detail-type"] == "Video Failed"
    assert event["detail"]["status"] == "REJECTED"
    assert event["detail"]["error"]["code"] == "missing_prompt"


def test_a_duplicate_delivery_is_not_announced_twice(pipeline: Pipeline) -> None:
    queue = pipeline.subscribe()
    pipeline.fal_faults(delivery=["duplicate"])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "once", "duration": "1"}))
    pipeline.answered_deliveries(job["job_id"], 2)  # the duplicate was processed too

    assert len(pipeline.events_for(queue, job["job_id"], timeout=5)) == 1


def test_an_event_eventbridge_refuses_leaves_the_job_complete_and_is_counted(
    pipeline: Pipeline,
) -> None:
    queue = pipeline.subscribe()
    before = _events_not_published(pipeline)
    # Every attempt boto3 makes at the completion event fails.
    pipeline.aws_faults(service="events", operation="PutEvents", times=3, status=500)

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "unannounced", "duration": "1"}))
    # What EventsNotPublishedAlarm watches; written once the webhook's invocation is over.
    eventually(lambda: _events_not_published(pipeline) == before + 1 or None)

    assert job["status"] == "COMPLETED"
    assert pipeline.events_for(queue, job["job_id"], timeout=2) == []


def _events_not_published(pipeline: Pipeline) -> float:
    log = Path(pipeline.info.state_dir, "logs", "WebhookFunction.log").read_text()
    total = 0.0
    for line in log.splitlines():
        if line.startswith('{"_aws"') and '"EventsNotPublished"' in line:
            value = json.loads(line)["EventsNotPublished"]
            total += sum(value) if isinstance(value, list) else value
    return total
