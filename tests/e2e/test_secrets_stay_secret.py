"""The fal key never appears in logs, events, job records or errors."""

from __future__ import annotations

from pathlib import Path

import boto3

from local.aws import REGION
from tests.support.pipeline import Pipeline


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
    name = pipeline.info.functions["SubmitFunction"]["environment"]["FAL_KEY_SECRET_NAME"]
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
