"""The sample events in events/ are real shapes: fed to the running pipeline, they make videos.

Users who wire S3 straight to SQS (S3 notification bodies) are served as well as the template's
EventBridge wiring. Each sample is replayed against a bucket of the test's own, so only the
message, not the upload, starts the job.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from local.template import REPO_ROOT
from pika_pipeline.jobs import job_id_for
from tests.support.pipeline import SAMPLE_IMAGE, Pipeline

EVENTS = REPO_ROOT / "events"


def _body_of(path: Path) -> dict[str, Any]:
    (record,) = json.loads(path.read_text())["Records"]
    body: dict[str, Any] = json.loads(record["body"])
    return body


@pytest.fixture
def own_bucket(pipeline: Pipeline) -> str:
    name = f"customer-uploads-{uuid.uuid4().hex[:8]}"
    pipeline.s3.create_bucket(Bucket=name)
    pipeline.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def test_the_eventbridge_sample_event_makes_a_video(pipeline: Pipeline, own_bucket: str) -> None:
    body = _body_of(EVENTS / "submit-eventbridge.json")
    obj = body["detail"]["object"]
    version = pipeline.s3.put_object(
        Bucket=own_bucket,
        Key=obj["key"],
        Body=SAMPLE_IMAGE.read_bytes(),
        Metadata={"prompt": "sample event", "duration": "1"},
    )["VersionId"]
    body["detail"]["bucket"]["name"] = own_bucket
    obj["version-id"] = version

    pipeline.send_raw_message(json.dumps(body))
    job = pipeline.wait_for_job(job_id_for(bucket=own_bucket, key=obj["key"], version=version))

    assert job["status"] == "COMPLETED", job
    assert job["source_key"] == "uploads/harbour at dawn.jpg"


def test_the_s3_notification_sample_event_makes_a_video(
    pipeline: Pipeline, own_bucket: str
) -> None:
    body = _body_of(EVENTS / "submit-s3-notification.json")
    (record,) = body["Records"]
    key = unquote_plus(record["s3"]["object"]["key"])
    assert key == "uploads/my photo été.png"
    version = pipeline.s3.put_object(
        Bucket=own_bucket,
        Key=key,
        Body=SAMPLE_IMAGE.read_bytes(),
        Metadata={"prompt": "sample notification", "duration": "1"},
    )["VersionId"]
    record["s3"]["bucket"]["name"] = own_bucket
    record["s3"]["object"]["versionId"] = version

    pipeline.send_raw_message(json.dumps(body))
    job = pipeline.wait_for_job(job_id_for(bucket=own_bucket, key=key, version=version))

    assert job["status"] == "COMPLETED", job
    assert job["source_key"] == key


def test_s3s_test_event_is_skipped_and_the_rest_of_the_batch_goes_on(pipeline: Pipeline) -> None:
    pipeline.send_raw_message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}))
    job_id = pipeline.upload({"prompt": "after the test event", "duration": "1"})

    assert pipeline.wait_for_job(job_id)["status"] == "COMPLETED"


def test_a_malformed_message_fails_alone_and_ends_in_the_dead_letter_queue(
    pipeline: Pipeline,
) -> None:
    garbage = f"this is not an S3 event {uuid.uuid4()}"
    pipeline.send_raw_message(garbage)
    job_id = pipeline.upload({"prompt": "next to a malformed message", "duration": "1"})

    assert pipeline.wait_for_job(job_id)["status"] == "COMPLETED"
    assert pipeline.wait_for_dead_letter(garbage) == garbage
    log = Path(pipeline.info.state_dir, "logs", "SubmitFunction.log").read_text()
    malformed = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and '"Malformed message"' in line
    ]
    assert malformed
    assert malformed[-1]["message_id"]
    assert "not JSON" in malformed[-1]["reason"]
