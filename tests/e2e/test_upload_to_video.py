"""A user drops an image into the bucket and gets a video: the whole pipeline, end to end."""

from __future__ import annotations

import base64
from datetime import datetime
from email.header import Header
from pathlib import Path
from urllib.parse import unquote

import av
import pytest

from tests.support.pipeline import Pipeline


@pytest.mark.parametrize(
    ("resolution", "duration", "frame_size"),
    [("720p", 2, (1280, 720)), ("1080p", 1, (1920, 1080))],
)
def test_an_uploaded_image_becomes_an_h264_video_of_the_requested_size(
    pipeline: Pipeline,
    tmp_path: Path,
    resolution: str,
    duration: int,
    frame_size: tuple[int, int],
) -> None:
    prompt = "Un café sur le port, lumière douce"  # non-ASCII: S3 carries it RFC 2047-encoded
    job_id = pipeline.upload(
        {
            "prompt": Header(prompt, "utf-8").encode(),
            "negative-prompt": "blurry",
            "seed": "42",
            "resolution": resolution,
            "duration": str(duration),
        }
    )

    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED", job
    assert job["prompt"] == prompt
    assert job["output_bucket"] == pipeline.output_bucket
    video = pipeline.download(job["output_bucket"], job["output_key"], tmp_path / "video.mp4")
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == frame_size
        assert container.duration is not None
        assert container.duration / av.time_base == pytest.approx(duration, abs=0.1)
        assert frames == duration * 24
    head = pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"]["job-id"] == job_id
    assert head["Metadata"]["fal-request-id"] == job["request_id"]
    # S3 metadata is ASCII: the source key is stored URL-quoted.
    assert unquote(head["Metadata"]["source-key"]) == job["source_key"]
    assert int(job["video_bytes"]) == head["ContentLength"]

    # fal was asked exactly once, with what the uploader wrote in the metadata.
    (request,) = pipeline.fal_requests_for(job_id)
    assert request["request_id"] == job["request_id"]
    assert request["arguments"]["prompt"] == prompt
    assert request["arguments"]["negative_prompt"] == "blurry"
    assert request["arguments"]["seed"] == 42
    assert request["arguments"]["resolution"] == resolution
    assert request["arguments"]["duration"] == duration
    image_url = request["arguments"]["image_url"]  # a short-lived presigned GET of the upload
    assert f"/{job['source_bucket']}/{job['source_key']}?" in image_url
    assert "X-Amz-Signature=" in image_url
    assert "X-Amz-Expires=3600" in image_url


def test_defaults_from_the_template_apply_when_metadata_omits_them(pipeline: Pipeline) -> None:
    job_id = pipeline.upload({"prompt": "gentle waves"})

    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED", job
    (request,) = pipeline.fal_requests_for(job_id)
    assert request["arguments"]["resolution"] == "720p"
    assert request["arguments"]["duration"] == 5
    assert "seed" not in request["arguments"]


@pytest.mark.parametrize(
    "encoded",
    [
        "=?UTF-8?B?" + base64.b64encode("Lumière d'été".encode()).decode() + "?=",
        "=?UTF-8?Q?Lumi=C3=A8re_d'=C3=A9t=C3=A9?=",
    ],
    ids=["base64", "quoted-printable"],
)
def test_a_non_ascii_prompt_arrives_intact_in_either_s3_encoding(
    pipeline: Pipeline, encoded: str
) -> None:
    job = pipeline.wait_for_job(pipeline.upload({"prompt": encoded, "duration": "1"}))

    assert job["prompt"] == "Lumière d'été"
    (request,) = pipeline.fal_requests_for(job["job_id"])
    assert request["arguments"]["prompt"] == "Lumière d'été"


def test_a_job_record_expires_after_the_retention_the_stack_was_given(pipeline: Pipeline) -> None:
    job = pipeline.wait_for_job(pipeline.upload({}))  # any job will do: a rejected one is quick

    created = datetime.fromisoformat(job["created_at"]).timestamp()
    assert int(job["expires_at"]) == pytest.approx(created + 30 * 86400, abs=5)
    ttl = pipeline.table.meta.client.describe_time_to_live(TableName=pipeline.table.name)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
