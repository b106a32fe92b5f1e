"""The fal key and the webhook signing key never appear in logs, events, job records or errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3

from local.aws import REGION
from tests.support.pipeline import Pipeline
from tests.support.webhook_receiver import webhook_receiver


def test_the_fal_key_is_nowhere_but_in_secrets_manager(pipeline: Pipeline) -> None:
    # given: every path taken once (fal down then refusing, a video, a rejection, a forgery)
    pipeline.fal_faults(submit=[500], outcome=["validation_error"])
    jobs = [
        pipeline.upload({"prompt": "refused after an outage", "duration": "1"}),
        pipeline.upload({"prompt": "a video", "duration": "1"}),
        pipeline.upload({}),
    ]
    for job_id in jobs:
        pipeline.wait_for_job(job_id)
    status, _ = pipeline.post_webhook(
        f"{pipeline.info.webhook_url}?job_id={jobs[1]}&attempt=0&token=forged", b"{}", {}
    )
    assert status == 401

    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=pipeline.info.aws_endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    name = pipeline.info.functions["SubmitFunction"]["environment"]["FAL_KEY_SECRET"]
    fal_key = secrets.get_secret_value(SecretId=name)["SecretString"]
    assert len(fal_key) > 16

    logs = Path(pipeline.info.state_dir, "logs")
    for function in ("SubmitFunction", "WebhookFunction", "ReconcilerFunction"):
        text = (logs / f"{function}.log").read_text()
        assert fal_key not in text, function
    for item in pipeline.table.scan()["Items"]:
        assert fal_key not in repr(item)
    for spec in pipeline.info.functions.values():
        assert fal_key not in repr(spec["environment"])


def test_the_webhook_signing_key_is_nowhere_but_in_secrets_manager(pipeline: Pipeline) -> None:
    # given: webhooks delivered for a video and a failure (and the events they came from)
    queue = pipeline.subscribe()
    pipeline.fal_faults(outcome=["validation_error"])
    name = pipeline.info.functions["NotifierFunction"]["environment"]["NOTIFY_SIGNING_SECRET"]
    key = json.loads(pipeline.secrets.get_secret_value(SecretId=name)["SecretString"])["current"]
    assert len(key) >= 32
    with webhook_receiver(f"whsec_{key}", pipeline.info.fal_ca_file) as receiver:
        jobs = [
            pipeline.upload({"prompt": "refused", "duration": "1", "callback-url": receiver.url}),
            pipeline.upload({"prompt": "a video", "duration": "1", "callback-url": receiver.url}),
        ]
        for job_id in jobs:
            pipeline.wait_for_job(job_id)
        deliveries = receiver.wait_for(2)
    assert all(d.verified for d in deliveries)
    events = _events(pipeline, queue, count=2)

    for text in (key, base64.b64decode(key).hex()):
        logs = Path(pipeline.info.state_dir, "logs")
        for function in pipeline.info.functions:
            assert text not in (logs / f"{function}.log").read_text(), function
        assert text not in json.dumps(events)
        for delivery in deliveries:
            assert text not in delivery.body.decode()
        for item in pipeline.table.scan()["Items"]:
            assert text not in repr(item)
        for spec in pipeline.info.functions.values():
            assert text not in repr(spec["environment"])


def _events(pipeline: Pipeline, queue_url: str, *, count: int) -> list[dict[str, object]]:
    """The first ``count`` completion events the subscribed queue received."""
    found: list[dict[str, object]] = []
    for _ in range(30):
        for message in pipeline.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            found.append(json.loads(message["Body"]))
        if len(found) >= count:
            return found
    raise AssertionError(f"{len(found)} events, not {count}")
