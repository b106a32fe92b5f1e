"""The sample events in events/ are real shapes: fed to the running pipeline, they make videos.

Users who wire S3 straight to SQS (S3 notification bodies) are served as well as the template's
EventBridge wiring. Each sample is replayed against a bucket of the test's own, so only the
message, not the upload, starts the job.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import pytest
from boto3.dynamodb.conditions import Attr

from local.template import REPO_ROOT
from pika_pipeline.jobs.identity import job_id_for
from tests.support.pipeline import SAMPLE_IMAGE, Pipeline, eventbridge_body

EVENTS = REPO_ROOT / "events"


def _body_of(path: Path) -> dict[str, Any]:
    (record,) = json.loads(path.read_text())["Records"]
    body: dict[str, Any] = json.loads(record["body"])
    return body


def s3_notification_body(bucket: str, key: str, version: str) -> str:
    """An S3 notification as S3 sends it straight to a queue: the key URL-encoded, + for spaces."""
    body = copy.deepcopy(_body_of(EVENTS / "submit-s3-notification.json"))
    (record,) = body["Records"]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["object"].update(key=quote_plus(key, safe="/"), versionId=version)
    return json.dumps(body)


# Spaces, +, %, unicode and nested prefixes: each shape encodes keys its own way.
AWKWARD_KEY = "uploads/a b/c+d%20e/{marker}/ünï çà.png"


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


def test_an_upload_with_an_awkward_key_makes_a_video_under_its_real_key(
    pipeline: Pipeline,
) -> None:
    key = AWKWARD_KEY.format(marker=uuid.uuid4().hex[:8])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "awkward", "duration": "1"}, key=key))

    assert job["status"] == "COMPLETED", job
    assert job["source_key"] == key


def test_an_s3_notification_with_an_awkward_key_makes_a_video_under_its_real_key(
    pipeline: Pipeline, own_bucket: str
) -> None:
    key = AWKWARD_KEY.format(marker=uuid.uuid4().hex[:8])
    version = pipeline.put_image(own_bucket, key, {"prompt": "awkward", "duration": "1"})

    pipeline.send_raw_message(s3_notification_body(own_bucket, key, version))
    job = pipeline.wait_for_job(job_id_for(bucket=own_bucket, key=key, version=version))

    assert job["status"] == "COMPLETED", job
    assert job["source_key"] == key


@pytest.mark.parametrize(
    ("where", "shape"),
    [("outside the input prefix", "eventbridge"), ("in the output bucket", "s3 notification")],
)
def test_a_message_about_an_object_the_pipeline_does_not_watch_is_consumed_without_a_job(
    pipeline: Pipeline, own_bucket: str, where: str, shape: str
) -> None:
    # The upload rule filters these out; a misconfigured rule or a direct S3 -> SQS wiring
    # would not. Without the guard, videos written to the output bucket could loop back.
    marker = uuid.uuid4().hex[:8]
    if where == "in the output bucket":
        bucket, key = pipeline.output_bucket, f"uploads/{marker}.png"
    else:
        bucket, key = own_bucket, f"elsewhere/{marker}.png"
    put = pipeline.s3.put_object(
        Bucket=bucket, Key=key, Body=SAMPLE_IMAGE.read_bytes(), Metadata={"prompt": "not watched"}
    )
    version = put.get("VersionId", "null")  # the output bucket is not versioned
    build = eventbridge_body if shape == "eventbridge" else s3_notification_body

    pipeline.send_raw_message(build(bucket, key, version))
    ignored = _eventually_logged(pipeline, "Ignoring an object outside the input prefix", key)

    assert ignored["bucket"] == bucket
    assert _jobs_with_source_key(pipeline, key) == []
    assert not [r for r in pipeline.fal_requests() if marker in r["arguments"]["image_url"]]
    pipeline.wait_for_queue_drained()  # its message was deleted: it cannot come back
    log = _submit_log(pipeline)
    assert [e for e in log if e.get("message_id") == ignored["message_id"]] == [ignored]
    with pytest.raises(AssertionError):
        pipeline.wait_for_dead_letter(marker, timeout=2)


def _jobs_with_source_key(pipeline: Pipeline, key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page: dict[str, Any] = {"FilterExpression": Attr("source_key").eq(key), "ConsistentRead": True}
    while True:
        response = pipeline.table.scan(**page)
        found += response["Items"]
        if "LastEvaluatedKey" not in response:
            return found
        page["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _submit_log(pipeline: Pipeline) -> list[dict[str, Any]]:
    log = Path(pipeline.info.state_dir, "logs", "SubmitFunction.log").read_text()
    return [json.loads(line) for line in log.splitlines() if line.startswith('{"level"')]


def _eventually_logged(pipeline: Pipeline, message: str, object_key: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for entry in _submit_log(pipeline):
            if entry["message"] == message and entry.get("object_key") == object_key:
                return entry
        time.sleep(0.25)
    raise AssertionError(f"the submit function never logged {message!r} for {object_key}")
