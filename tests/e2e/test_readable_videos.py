"""Videos people can find: the video of `uploads/shop/spring/sku 123.png` is
`videos/shop/spring/sku 123.mp4`, it links back to its upload and the uploader's correlation id,
and a re-upload's video takes that name only if it is the newer upload, whatever order fal
finishes them in; with boto3 uploads against the local stack, checked as a user would (S3
listings, object metadata, the job record, the events, the webhook, the CLI)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from local.template import REPO_ROOT
from pika_pipeline.submit.video_request import encode_metadata_value
from tests.e2e.test_cli import run
from tests.support.pipeline import Pipeline
from tests.support.webhook_receiver import webhook_receiver

CORRELATION_ID = "SKU 123 / lot 7 — été"


@pytest.fixture
def signing_secret(pipeline: Pipeline) -> str:
    """What an operator hands a receiver: "whsec_" + the secret's current key."""
    name = pipeline.info.functions["NotifierFunction"]["environment"]["NOTIFY_SIGNING_SECRET"]
    value = json.loads(pipeline.secrets.get_secret_value(SecretId=name)["SecretString"])
    return f"whsec_{value['current']}"


def keys_under(pipeline: Pipeline, prefix: str) -> list[str]:
    listed = pipeline.s3.list_objects_v2(Bucket=pipeline.output_bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def metadata_of(pipeline: Pipeline, key: str) -> dict[str, str]:
    return pipeline.s3.head_object(Bucket=pipeline.output_bucket, Key=key)["Metadata"]


def test_the_video_has_the_uploads_name_and_carries_its_correlation_id_everywhere(
    pipeline: Pipeline, signing_secret: str, tmp_path: Path
) -> None:
    folder = f"shop-{uuid.uuid4().hex[:6]}/spring"
    events = pipeline.subscribe()
    with webhook_receiver(signing_secret, pipeline.info.fal_ca_file) as receiver:
        job_id = pipeline.upload(
            {
                "prompt": "a slow turn",
                "duration": "1",
                "correlation-id": encode_metadata_value(CORRELATION_ID),
                "callback-url": receiver.url,
            },
            key=f"uploads/{folder}/sku 123.png",
        )
        job = pipeline.wait_for_job(job_id)
        (delivery,) = receiver.wait_for(1)

    readable = f"videos/{folder}/sku 123.mp4"
    assert (job["status"], job["output_key"]) == ("COMPLETED", readable)
    assert job["correlation_id"] == CORRELATION_ID
    # one object, at the readable key; no staging copy
    assert keys_under(pipeline, f"videos/{folder}/") == [readable]
    assert keys_under(pipeline, f"videos/{job_id}/") == []
    metadata = metadata_of(pipeline, readable)
    assert metadata["job-id"] == job_id
    assert unquote(metadata["source-key"]) == f"uploads/{folder}/sku 123.png"
    assert unquote(metadata["source-version"]) == job["source_version"]
    assert unquote(metadata["correlation-id"]) == CORRELATION_ID
    (event,) = pipeline.events_for(events, job_id)
    assert event["detail"]["correlation_id"] == CORRELATION_ID
    assert event["detail"]["video"]["key"] == readable
    assert delivery.verified
    assert delivery.payload["data"]["correlation_id"] == CORRELATION_ID

    # This checkout's CLI, whichever one the virtualenv's entry point was installed from.
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'cli'}:{REPO_ROOT / 'layers' / 'shared'}"}
    status = run(pipeline, "status", job_id, env=env)
    waited = run(pipeline, "wait", job_id, env=env)
    downloaded = run(pipeline, "download", job_id, str(tmp_path), env=env)
    assert CORRELATION_ID in status.stdout
    assert f"correlation id: {CORRELATION_ID}" in waited.stdout
    assert f"video: s3://{pipeline.output_bucket}/{readable}" in waited.stdout
    assert Path(downloaded.stdout.strip()) == tmp_path / "sku 123.mp4"


def test_a_correlation_id_with_a_control_character_is_rejected_before_paying(
    pipeline: Pipeline,
) -> None:
    job_id = pipeline.upload({"prompt": "x", "duration": "1", "correlation-id": "a\tb"})

    job = pipeline.wait_for_job(job_id)

    assert (job["status"], job["error_code"]) == ("REJECTED", "invalid_correlation_id")
    assert pipeline.fal_submits_for(job_id) == []


def reupload(pipeline: Pipeline, key: str, prompt: str) -> str:
    """An upload of ``key`` once the previous upload of it has reached fal."""
    job_id = pipeline.upload({"prompt": prompt, "duration": "1"}, key=key)
    pipeline.wait_for_status(job_id, "SUBMITTED")
    return job_id


def assert_one_video_per_job(pipeline: Pipeline, *jobs: dict[str, Any], folder: str) -> None:
    """Each job's video is the one object carrying its job id, where its record says; nothing
    else is left in the readable folder or the staging folders."""
    expected = sorted(job["output_key"] for job in jobs)
    found = sorted(
        {key for job in jobs for key in keys_under(pipeline, f"videos/{job['job_id']}/")}
        | set(keys_under(pipeline, f"videos/{folder}/"))
    )
    assert found == expected
    for job in jobs:
        assert metadata_of(pipeline, job["output_key"])["job-id"] == job["job_id"]


def test_an_older_uploads_video_finishing_last_does_not_replace_the_newer_one(
    pipeline: Pipeline,
) -> None:
    folder = f"reup-{uuid.uuid4().hex[:6]}"
    key = f"uploads/{folder}/cat.jpg"
    readable = f"videos/{folder}/cat.mp4"
    # the first upload's fal request answers its webhook 8 s late
    pipeline.fal_faults(delivery=["late"], late_seconds=8)
    older = reupload(pipeline, key, "first")
    newer = reupload(pipeline, key, "second")

    newer_job = pipeline.wait_for_job(newer)
    older_job = pipeline.wait_for_job(older)

    assert older_job["completed_at"] > newer_job["completed_at"]  # fal finished it last
    assert newer_job["output_key"] == readable
    assert metadata_of(pipeline, readable)["job-id"] == newer
    assert older_job["status"] == "COMPLETED"
    assert older_job["output_key"] == f"videos/{older}/{older_job['completed_request_id']}.mp4"
    assert_one_video_per_job(pipeline, older_job, newer_job, folder=folder)


def test_a_newer_uploads_video_replaces_the_older_one_which_keeps_its_own_copy(
    pipeline: Pipeline,
) -> None:
    folder = f"reup-{uuid.uuid4().hex[:6]}"
    key = f"uploads/{folder}/cat.jpg"
    readable = f"videos/{folder}/cat.mp4"
    older = pipeline.upload({"prompt": "first", "duration": "1"}, key=key)
    assert pipeline.wait_for_job(older)["output_key"] == readable
    # the newer video is past the multipart threshold: its refused write is the multipart
    # upload's completion (If-None-Match on CompleteMultipartUpload)
    pipeline.fal_faults(media=["large"])

    newer_job = pipeline.wait_for_job(
        pipeline.upload({"prompt": "second", "duration": "1"}, key=key)
    )

    older_job = pipeline.job(older)
    assert older_job is not None
    assert newer_job["output_key"] == readable
    assert int(newer_job["video_bytes"]) > 8 * 1024 * 1024
    assert metadata_of(pipeline, readable)["job-id"] == newer_job["job_id"]
    assert older_job["output_key"] == f"videos/{older}/{older_job['completed_request_id']}.mp4"
    assert_one_video_per_job(pipeline, older_job, newer_job, folder=folder)


def test_a_non_ascii_name_is_kept_in_the_key(pipeline: Pipeline) -> None:
    folder = f"intl-{uuid.uuid4().hex[:6]}"
    job = pipeline.wait_for_job(
        pipeline.upload({"prompt": "x", "duration": "1"}, key=f"uploads/{folder}/été/photo.v2.webp")
    )

    assert job["output_key"] == f"videos/{folder}/été/photo.v2.mp4"
    assert keys_under(pipeline, f"videos/{folder}/") == [job["output_key"]]
