"""Fetching fal's video safely and storing it whole: never a partial object, never a lost result."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.pipeline import Pipeline


def _first_deliveries(pipeline: Pipeline, job_id: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (request,) = pipeline.fal_requests_for(job_id)
        if len(request["deliveries"]) >= count:
            return [d["status"] for d in request["deliveries"][:count]]
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} deliveries for {job_id}")


def test_a_large_video_is_copied_in_parts_and_arrives_whole(pipeline: Pipeline) -> None:
    pipeline.fal_faults(media=["large"])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "big", "duration": "1"}))

    assert job["status"] == "COMPLETED"
    head = pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])
    assert head["ContentLength"] == 12 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-2")  # two 8 MiB parts: a multipart upload


def test_an_s3_failure_half_way_leaves_nothing_and_fals_retry_completes_the_job(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(media=["large"])
    # boto3 retries a failed part itself (3 attempts each, 2 parts in flight): enough failures
    # that the first copy gives up, too few left to stop the next one.
    pipeline.aws_faults(service="s3", operation="UploadPart", times=6, status=500)

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "retry me", "duration": "1"}))

    assert job["status"] == "COMPLETED"
    assert _first_deliveries(pipeline, job["job_id"], 2) == [502, 200]
    assert pipeline.multipart_uploads_in_progress() == []
    head = pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])
    assert head["ContentLength"] == 12 * 1024 * 1024


def test_a_download_that_breaks_off_stores_nothing_until_fal_delivers_again(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(media=["truncated_once"])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "cut short", "duration": "1"}))

    assert job["status"] == "COMPLETED"
    assert _first_deliveries(pipeline, job["job_id"], 2) == [502, 200]
    assert (
        int(job["video_bytes"])
        == pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])[
            "ContentLength"
        ]
    )


@pytest.mark.parametrize(
    "media",
    [
        "wrong_size",  # fal announced one size, another arrived
        "redirect_private",  # redirects are never followed (here: to a loopback URL)
    ],
)
def test_a_video_that_fails_the_checks_is_not_stored(pipeline: Pipeline, media: str) -> None:
    pipeline.fal_faults(media=[media])

    job_id = pipeline.upload({"prompt": media, "duration": "1"})
    job = pipeline.wait_for_status(job_id, "SUBMITTED")

    # 502: the video is not stored now, and fal delivers again (a later try may succeed).
    assert _first_deliveries(pipeline, job_id, 1) == [502]
    assert pipeline.job(job_id) == job
    assert pipeline.video_objects(job_id) == []
    # The redirect's target would have served the real video: it was never asked for.
    assert [r["redirects_followed"] for r in pipeline.fal_requests_for(job_id)] == [0]


@pytest.mark.parametrize(
    ("media", "code"),
    [
        ("not_mp4", "video_not_mp4"),  # an error page is not a video, however often fetched
        ("foreign_host", "video_host_not_allowed"),  # not one of fal's media hosts
    ],
)
def test_a_video_that_can_never_be_stored_ends_the_job_failed_at_once(
    pipeline: Pipeline, media: str, code: str
) -> None:
    queue = pipeline.subscribe()
    pipeline.fal_faults(media=[media])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": media, "duration": "1"}))

    assert (job["status"], job["error_code"]) == ("FAILED", code)
    assert "open_shard" not in job  # nothing left for the reconciler
    # 2xx: the authentic delivery was accepted and recorded, so fal stops delivering it.
    assert _first_deliveries(pipeline, job["job_id"], 1) == [200]
    (event,) = pipeline.events_for(queue, job["job_id"])
    assert (event["detail-type"], event["detail"]["error"]["code"]) == ("Video Failed", code)
    assert pipeline.video_objects(job["job_id"]) == []
