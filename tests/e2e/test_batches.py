"""A product pipeline drops a batch and wants to know how it goes and when it is done: live
counters through `pika-pipeline batch`, then one `Batch Completed` event and one signed
`batch.completed` webhook once every job is final and the batch has been quiet.

A stack of its own: a short BatchQuietSeconds, its events on a bus of its own, and NotifyUrl
pointing at this module's receiver (every webhook goes there, so the session's other tests must not
share it).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from local.stack import LocalStack
from local.template import REPO_ROOT
from pika_pipeline.dispatch.control import PAUSE_CACHE_SECONDS
from pika_pipeline.jobs.events import BATCH_COMPLETED
from tests.e2e.test_cli import cli
from tests.support.pipeline import Pipeline, eventually
from tests.support.webhook_receiver import Delivery, WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.stack

QUIET_SECONDS = 3


@dataclass(frozen=True)
class BatchStack:
    pipeline: Pipeline
    stack_file: Path
    receiver: WebhookReceiver


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchStack]:
    state_dir = tmp_path_factory.mktemp("batch-stack")
    port = _free_port()
    parameters = {
        "SubmitRetryBaseSeconds": "1",
        "FalTimeoutSeconds": "2",
        "ReconcileAfterSeconds": "1",
        "JobDeadlineSeconds": "30",
        "FalConcurrency": "4",
        "BatchQuietSeconds": str(QUIET_SECONDS),
        "NotifyUrl": f"https://127.0.0.1:{port}/hooks/batches",
        "NotifyRetryDelays": "1",
        "NotifyMaxAttempts": "4",
        # A bus of one's own: the notifier's rule and the integration must listen on it.
        "EventBusName": "pika-pipeline-events",
    }
    with LocalStack(state_dir, parameters=parameters, run_schedules=False) as info:
        pipeline = Pipeline(info)
        name = info.functions["NotifierFunction"]["environment"]["NOTIFY_SIGNING_SECRET"]
        value = json.loads(pipeline.secrets.get_secret_value(SecretId=name)["SecretString"])
        with webhook_receiver(f"whsec_{value['current']}", info.fal_ca_file, port=port) as hooks:
            yield BatchStack(pipeline, state_dir / "stack.json", hooks)


def test_a_batch_is_counted_live_announced_once_and_reopened_by_a_later_upload(
    batched: BatchStack,
) -> None:
    pipeline = batched.pipeline
    integration = pipeline.subscribe()
    batch = f"spring-{uuid.uuid4().hex[:6]}"
    pipeline.fal_faults(outcome=["validation_error"])  # one of the three fails at fal

    jobs = [
        pipeline.wait_for_job(_upload(pipeline, f"uploads/{batch}/sku {n}.png")) for n in range(3)
    ]
    assert sorted(job["status"] for job in jobs) == ["COMPLETED", "COMPLETED", "FAILED"]

    # What the operator sees, as soon as the last job is final.
    shown = _batch_json(batched, batch)
    assert (shown["jobs"], shown["open"], shown["finished"]) == (3, 0, 3)
    assert {k: v for k, v in shown["counts"].items() if v} == {"COMPLETED": 2, "FAILED": 1}
    assert shown["failures"] == {"fal_validation": 1}
    assert shown["completed"] is False  # not quiet for BatchQuietSeconds yet
    screen = _run(batched, "batch", batch)
    assert "3/3" in screen.stdout
    assert "fal_validation" in screen.stdout
    listed = json.loads(_run(batched, "batches", "--json").stdout)
    assert batch in [entry["batch"] for entry in listed]

    first = _announced(batched, integration, batch)
    assert first["counts"] == {"COMPLETED": 2, "FAILED": 1}
    assert first["failures"] == {"fal_validation": 1}
    assert first["jobs"] == 3
    assert first["first_upload_at"] <= first["last_upload_at"]
    assert first["summary"] == 1
    assert _batch_json(batched, batch)["completed"] is True
    hook = _batch_webhook(batched.receiver, batch, summary=1)
    assert hook.verified
    assert hook.payload["data"]["counts"] == first["counts"]

    # A later upload to the same batch reopens it; a new summary follows.
    late = pipeline.wait_for_job(_upload(pipeline, f"uploads/{batch}/sku late.png"))
    assert late["status"] == "COMPLETED"
    assert _batch_json(batched, batch)["completed"] is False
    second = _announced(batched, integration, batch)
    assert second["summary"] == 2
    assert second["counts"] == {"COMPLETED": 3, "FAILED": 1}
    assert second["first_upload_at"] == first["first_upload_at"]
    assert second["last_upload_at"] > first["last_upload_at"]
    assert _batch_webhook(batched.receiver, batch, summary=2).verified
    hooks = _batch_hooks(batched.receiver, batch)
    assert sorted(h.payload["data"]["summary"] for h in hooks) == [1, 2]
    assert len({h.webhook_id for h in hooks}) == 2  # one message per summary


def test_a_batch_shows_its_jobs_waiting_then_at_fal_then_all_final(batched: BatchStack) -> None:
    pipeline = batched.pipeline
    batch = f"summer-{uuid.uuid4().hex[:6]}"
    _run(batched, "pause")
    try:
        time.sleep(PAUSE_CACHE_SECONDS + 0.5)  # as long as a function may trust "running"
        jobs = [_upload(pipeline, f"uploads/{batch}/sku {n}.png") for n in range(3)]
        for job_id in jobs:
            pipeline.wait_for_status(job_id, "QUEUED")

        waiting = _batch_json(batched, batch)
        assert (waiting["waiting"], waiting["at_fal"], waiting["open"]) == (3, 0, 3)
        assert _rows(_run(batched, "batch", batch).stdout) >= {"waiting 3", "at fal 0"}
        # fal accepts them but its webhooks are lost: they stay at fal until the reconciler looks.
        pipeline.fal_faults(delivery=["drop"] * len(jobs))
    finally:
        _run(batched, "resume")  # its nudge dispatches at once
    for job_id in jobs:
        pipeline.wait_for_status(job_id, "SUBMITTED")

    at_fal = _batch_json(batched, batch)
    assert (at_fal["waiting"], at_fal["at_fal"], at_fal["open"]) == (0, 3, 3)
    assert _rows(_run(batched, "batch", batch).stdout) >= {"waiting 0", "at fal 3"}

    for job_id in jobs:
        assert pipeline.reconcile_until_final(job_id)["status"] == "COMPLETED"
    done = _batch_json(batched, batch)
    assert (done["waiting"], done["at_fal"], done["open"], done["finished"]) == (0, 0, 0, 3)
    assert _rows(_run(batched, "batch", batch).stdout) >= {"waiting 0", "at fal 0", "COMPLETED 3"}


def _rows(screen: str) -> set[str]:
    """The lines of a view, with their runs of spaces squeezed: "waiting 3"."""
    return {" ".join(line.split()) for line in screen.splitlines()}


def _upload(pipeline: Pipeline, key: str) -> str:
    return pipeline.upload({"prompt": "a spring catalogue", "duration": "1"}, key=key)


def _announced(batched: BatchStack, queue_url: str, batch: str) -> dict[str, Any]:
    """The reconciler's scheduled runs, until one announces the batch; then one more run, which
    must announce nothing. Returns the one Batch Completed event the integration received."""
    pipeline = batched.pipeline
    eventually(lambda: pipeline.reconcile().get("batches_completed"), timeout=30)
    assert "batches_completed" not in pipeline.reconcile()
    # EventBridge delivered both runs' events before the runs returned: the queue holds them all.
    summaries = [
        event["detail"]
        for event in _drain(pipeline, queue_url)
        if event["detail-type"] == BATCH_COMPLETED and event["detail"]["batch"] == batch
    ]
    assert len(summaries) == 1, summaries
    summary: dict[str, Any] = summaries[0]
    return summary


def _drain(pipeline: Pipeline, queue_url: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        messages = pipeline.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        if not messages:
            return events
        for message in messages:
            events.append(json.loads(message["Body"]))
            pipeline.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _batch_hooks(receiver: WebhookReceiver, batch: str) -> list[Delivery]:
    return [
        d
        for d in list(receiver.deliveries)
        if d.payload["type"] == "batch.completed" and d.payload["data"]["batch"] == batch
    ]


def _batch_webhook(receiver: WebhookReceiver, batch: str, *, summary: int) -> Delivery:
    def delivered() -> Delivery | None:
        hooks = _batch_hooks(receiver, batch)
        found = [d for d in hooks if d.payload["data"]["summary"] == summary]
        return found[0] if found else None

    return eventually(delivered, timeout=30)


def _batch_json(batched: BatchStack, batch: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(_run(batched, "batch", batch, "--json").stdout)
    return shown


def _run(batched: BatchStack, *args: str) -> CompletedProcess[str]:
    # This checkout's packages first: the virtualenv's entry point may be installed from another.
    here = os.pathsep.join(str(REPO_ROOT / p) for p in ("cli", "layers/shared"))
    path = os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))
    result = cli(
        "--local-stack", str(batched.stack_file), *args, env={**os.environ, "PYTHONPATH": path}
    )
    assert result.returncode == 0, result.stderr
    return result


def _free_port() -> int:
    """A port for the receiver, chosen before the stack starts with its URL as NotifyUrl."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
