"""The fal key, the webhook token key and the per-attempt tokens never appear in logs, events, job
records or errors, even with LogLevel=DEBUG.

The ``whsec_`` signing key of outbound webhooks never appears in them either, nor in the webhooks
the notifier delivers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from local.aws import REGION
from local.stack import LocalStack
from tests.support.pipeline import Pipeline
from tests.support.webhook_receiver import webhook_receiver

FUNCTIONS = ("SubmitFunction", "WebhookFunction", "ReconcilerFunction", "NotifierFunction")


@pytest.fixture(scope="module")
def debug_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A stack of its own whose functions log everything they log at all."""
    parameters = {"LogLevel": "DEBUG", "SubmitRetryBaseSeconds": "1", "FalTimeoutSeconds": "2"}
    state_dir = tmp_path_factory.mktemp("debug-stack")
    with LocalStack(state_dir, parameters=parameters, run_schedules=False) as info:
        yield Pipeline(info)


def _every_path_once(pipeline: Pipeline) -> list[str]:
    """fal down then refusing, a video, a rejection, a forgery; the jobs' ids."""
    pipeline.fal_faults(submit=[500], outcome=["validation_error"])
    jobs = [
        pipeline.upload({"prompt": "refused after an outage", "duration": "1"}),
        pipeline.upload({"prompt": "a video", "duration": "1"}),
        pipeline.upload({}),
    ]
    for job_id in jobs:
        # fal's outage at dispatch leaves that job to the reconciler, which submits it again.
        pipeline.reconcile_until_final(job_id)
    status, _ = pipeline.post_webhook(
        f"{pipeline.info.webhook_url}?job_id={jobs[1]}&attempt=0&token=forged", b"{}", {}
    )
    assert status == 401
    return jobs


def _secret_value(pipeline: Pipeline, name: str) -> str:
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=pipeline.info.aws_endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    value: str = secrets.get_secret_value(SecretId=name)["SecretString"]
    assert len(value) > 16
    return value


def _tokens(pipeline: Pipeline, jobs: list[str]) -> set[str]:
    """The token of every webhook URL the submit path handed fal, refused submits included."""
    urls = [s["webhook_url"] for job_id in jobs for s in pipeline.fal_submits_for(job_id)]
    return {parse_qs(urlsplit(url).query)["token"][0] for url in urls if url}


def _assert_nowhere_but_in_secrets_manager(pipeline: Pipeline, secrets: dict[str, str]) -> None:
    logs = Path(pipeline.info.state_dir, "logs")
    for function in FUNCTIONS:
        text = (logs / f"{function}.log").read_text()
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in {function}'s log"
    for item in pipeline.table.scan()["Items"]:
        for what, secret in secrets.items():
            assert secret not in repr(item), f"{what} in a job record"
    for spec in pipeline.info.functions.values():
        for what, secret in secrets.items():
            assert secret not in repr(spec["environment"]), f"{what} in an environment"


def test_the_fal_key_is_nowhere_but_in_secrets_manager(pipeline: Pipeline) -> None:
    _every_path_once(pipeline)
    name = pipeline.info.functions["SubmitFunction"]["environment"]["FAL_KEY_SECRET_NAME"]

    _assert_nowhere_but_in_secrets_manager(pipeline, {"fal key": _secret_value(pipeline, name)})


def test_with_debug_logs_no_secret_and_no_webhook_token_reaches_a_log(
    debug_pipeline: Pipeline,
) -> None:
    jobs = _every_path_once(debug_pipeline)
    environment = debug_pipeline.info.functions["SubmitFunction"]["environment"]
    tokens = _tokens(debug_pipeline, jobs)
    assert len(tokens) >= 3  # the refused submit, its retry, the video's
    secrets = {
        "fal key": _secret_value(debug_pipeline, environment["FAL_KEY_SECRET_NAME"]),
        "token key": _secret_value(debug_pipeline, environment["WEBHOOK_TOKEN_SECRET"]),
        **{f"token {token[:6]}...": token for token in tokens},
    }
    # The functions logged below WARNING (our code has no DEBUG lines yet; INFO shows the level
    # took): the check below looked at real output. That httpx, httpcore and fal_client stay
    # at WARNING even when the root logger does not is tests/unit/test_fal_gateway.py's.
    submit_log = Path(debug_pipeline.info.state_dir, "logs", "SubmitFunction.log").read_text()
    assert "Submitted to fal" in submit_log

    _assert_nowhere_but_in_secrets_manager(debug_pipeline, secrets)


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
