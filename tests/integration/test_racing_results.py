"""Two fal results racing for one job: the transition keeps one video, the other is not stored.

This happens when a call's answer was lost and a second call was made: fal then holds two paid
requests for one upload, and both results may arrive at once. The race is set up here by recording
a result against a snapshot of the job read before the other result completed it, through the
same ResultRecorder the webhook runs, against the local stack's S3 and DynamoDB over HTTP.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from pika_pipeline.fal.delivery import FalDelivery
from pika_pipeline.jobs.events import JobEvents
from pika_pipeline.jobs.job import Job
from pika_pipeline.jobs.repository import JobRepository
from pika_pipeline.results.recorder import RecordOutcome, ResultRecorder
from pika_pipeline.results.video_keys import DEFAULT_TEMPLATE, VideoKeyTemplate
from pika_pipeline.results.video_placement import VideoPlacement
from pika_pipeline.results.video_store import VideoStore, pinned_pool
from tests.support.pipeline import Pipeline, without_outbox

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient


def _recorder(pipeline: Pipeline, video_url: str) -> ResultRecorder:
    repository = JobRepository(lambda: pipeline.table)
    store = VideoStore(
        s3=pipeline.s3,
        bucket=pipeline.output_bucket,
        allowed_hosts=(urlsplit(video_url).netloc,),
        max_bytes=50 * 1024 * 1024,
        open_pool=lambda source: pinned_pool(source, ca_certs=pipeline.info.fal_ca_file),
    )
    return ResultRecorder(
        repository=repository,
        store=store,
        # The fake has the one call JobEvents makes, put_events, and fails the test if made.
        events=JobEvents(cast("EventBridgeClient", _NoEvents()), "default"),
        placement=VideoPlacement(
            store=store,
            repository=repository,
            output_prefix="videos/",
            input_prefix="uploads/",
            template=VideoKeyTemplate(DEFAULT_TEMPLATE),
        ),
    )


def _videos_of(pipeline: Pipeline, job: dict[str, Any]) -> list[str]:
    """The objects that say they are this job's video: under its staging folder, or in its
    upload's readable folder."""
    job_id = job["job_id"]
    folder = str(job["source_key"]).removeprefix("uploads/").rsplit("/", 1)[0]
    keys: list[str] = []
    for prefix in (f"videos/{job_id}/", f"videos/{folder}/"):
        listed = pipeline.s3.list_objects_v2(Bucket=pipeline.output_bucket, Prefix=prefix)
        for o in listed.get("Contents", []):
            head = pipeline.s3.head_object(Bucket=pipeline.output_bucket, Key=o["Key"])
            if head["Metadata"].get("job-id") == job_id:
                keys.append(o["Key"])
    return keys


class _NoEvents:
    """The racing loser publishes nothing; a publish would show up here as a failure."""

    def put_events(self, **_: Any) -> dict[str, Any]:
        raise AssertionError("a duplicate result must not be announced")


def test_a_second_requests_result_losing_the_race_leaves_only_the_kept_video(
    pipeline: Pipeline,
) -> None:
    # given a job completed by fal's first request
    job_id = pipeline.upload({"prompt": "two results, one video", "duration": "1"})
    completed = pipeline.wait_for_status(job_id, "COMPLETED", timeout=60)
    (request,) = pipeline.fal_requests_for(job_id)
    video_url = json.loads(pipeline.delivered(job_id)["body"])["payload"]["video"]["url"]
    # and a second request's result that read the job before the first one finished it
    before_completion = Job({**completed, "status": "SUBMITTED"})
    second = FalDelivery(
        request_id=str(uuid.uuid4()), status="OK", payload={"video": {"url": video_url}}
    )

    # when the second result is recorded
    outcome = _recorder(pipeline, video_url).record(before_completion, second)

    # then the job keeps its first video, and only that one is stored
    assert outcome == RecordOutcome.DUPLICATE
    after = pipeline.job(job_id)
    assert after is not None
    assert after["output_key"] == completed["output_key"]
    assert after["completed_request_id"] == request["request_id"]
    assert _videos_of(pipeline, completed) == [completed["output_key"]]
    head = pipeline.s3.head_object(Bucket=pipeline.output_bucket, Key=completed["output_key"])
    assert head["Metadata"]["fal-request-id"] == request["request_id"]


def test_a_duplicate_of_the_same_result_losing_the_race_keeps_the_stored_video(
    pipeline: Pipeline,
) -> None:
    # given a job completed by fal's request, and that same result delivered twice at once
    job_id = pipeline.upload({"prompt": "one result, two deliveries", "duration": "1"})
    completed = pipeline.wait_for_status(job_id, "COMPLETED", timeout=60)
    delivery = FalDelivery.from_json(pipeline.delivered(job_id)["body"])
    video_url = json.loads(pipeline.delivered(job_id)["body"])["payload"]["video"]["url"]
    before_completion = Job({**completed, "status": "SUBMITTED"})

    # when the second delivery, which read the job before the first finished, is recorded
    outcome = _recorder(pipeline, video_url).record(before_completion, delivery)

    # then it is a duplicate, and the one video (the same key it rewrote) is still there
    assert outcome == RecordOutcome.DUPLICATE
    assert pipeline.job_state(job_id) == without_outbox(completed)
    assert _videos_of(pipeline, completed) == [completed["output_key"]]
    head = pipeline.s3.head_object(Bucket=pipeline.output_bucket, Key=completed["output_key"])
    assert head["ContentLength"] == int(completed["video_bytes"])
