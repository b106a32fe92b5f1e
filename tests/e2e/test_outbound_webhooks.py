"""Integrations outside AWS hear about finished jobs through signed Standard Webhooks POSTs,
checked here by a receiver that verifies with the official ``standardwebhooks`` library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from local.template import REPO_ROOT
from tests.support.pipeline import Pipeline
from tests.support.webhook_receiver import webhook_receiver


@pytest.fixture
def signing_secret(pipeline: Pipeline) -> str:
    """What an operator hands a receiver: "whsec_" + the secret's current key."""
    name = pipeline.info.functions["NotifierFunction"]["environment"]["NOTIFY_SIGNING_SECRET"]
    value = json.loads(pipeline.secrets.get_secret_value(SecretId=name)["SecretString"])
    return f"whsec_{value['current']}"


def test_a_finished_video_is_posted_signed_to_the_uploads_callback(
    pipeline: Pipeline, signing_secret: str
) -> None:
    with webhook_receiver(signing_secret, pipeline.info.fal_ca_file) as receiver:
        job = pipeline.wait_for_job(
            pipeline.upload(
                {"prompt": "tell me", "duration": "1", "callback-url": receiver.url},
                key=f"uploads/spring drop/{uuid.uuid4().hex[:8]}.jpg",
            )
        )
        (delivery,) = receiver.wait_for(1)

    assert delivery.verified
    assert delivery.webhook_id.startswith("msg_")
    assert len(delivery.body) < 20 * 1024
    payload = delivery.payload
    assert payload["type"] == "video.completed"
    assert payload["timestamp"]
    data = payload["data"]
    assert (data["job_id"], data["status"]) == (job["job_id"], "COMPLETED")
    assert data["batch"] == "spring drop"  # the first folder under the input prefix
    assert data["video"]["key"] == job["output_key"]
    assert "callback_url" not in data
    with urllib.request.urlopen(data["download_url"], timeout=10) as response:  # noqa: S310
        downloaded = response.read()
    stored = pipeline.s3.get_object(Bucket=job["output_bucket"], Key=job["output_key"])
    assert downloaded == stored["Body"].read()
    assert job["callback_url"] == receiver.url


def test_a_failed_video_is_posted_with_its_error_code(
    pipeline: Pipeline, signing_secret: str
) -> None:
    pipeline.fal_faults(outcome=["validation_error"])
    with webhook_receiver(signing_secret, pipeline.info.fal_ca_file) as receiver:
        job = pipeline.wait_for_job(
            pipeline.upload({"prompt": "refused", "duration": "1", "callback-url": receiver.url})
        )
        (delivery,) = receiver.wait_for(1)

    assert delivery.verified
    assert delivery.payload["type"] == "video.failed"
    assert delivery.payload["data"]["error"]["code"] == job["error_code"] == "fal_validation"
    assert "download_url" not in delivery.payload["data"]


def test_a_receiver_down_for_a_while_gets_each_message_once_in_the_end(
    pipeline: Pipeline, signing_secret: str
) -> None:
    with webhook_receiver(signing_secret, pipeline.info.fal_ca_file, [503, 500]) as receiver:
        pipeline.wait_for_job(
            pipeline.upload({"prompt": "retry me", "duration": "1", "callback-url": receiver.url})
        )
        deliveries = receiver.wait_for(3)

    assert [d.answered for d in deliveries] == [503, 500, 200]
    assert all(d.verified for d in deliveries)
    assert len({d.webhook_id for d in deliveries}) == 1  # the same message, retried
    assert list(receiver.delivered().values()) == [1]


def test_a_receiver_answering_410_is_not_sent_that_message_again(
    pipeline: Pipeline, signing_secret: str
) -> None:
    mark = pipeline.log_mark("NotifierFunction")
    with webhook_receiver(signing_secret, pipeline.info.fal_ca_file, [410]) as receiver:
        pipeline.wait_for_job(
            pipeline.upload({"prompt": "stop it", "duration": "1", "callback-url": receiver.url})
        )
        (delivery,) = receiver.wait_for(1)
        # the notifier has finished with the message: it logged its decision
        (entry,) = pipeline.wait_for_log(
            "NotifierFunction",
            "Webhook not delivered; not retried",
            since=mark,
            webhook_id=delivery.webhook_id,
        )
        assert entry["outcome"] == "gone"
        # and the queue holds nothing more for it: it is drained, not waiting on a retry
        _wait_for_notify_queue_drained(pipeline)
        assert len(receiver.deliveries) == 1


def test_a_receiver_that_does_not_answer_in_time_is_retried(
    pipeline: Pipeline, signing_secret: str
) -> None:
    mark = pipeline.log_mark("NotifierFunction")
    with webhook_receiver(signing_secret, pipeline.info.fal_ca_file, [0]) as receiver:
        pipeline.wait_for_job(
            pipeline.upload({"prompt": "slow one", "duration": "1", "callback-url": receiver.url})
        )
        deliveries = receiver.wait_for(2, timeout=60)

    (timed_out,) = [
        e
        for e in pipeline.log_entries("NotifierFunction", since=mark)
        if e.get("webhook_id") == deliveries[0].webhook_id and e.get("outcome") == "timeout"
    ]
    assert timed_out["retry_in_seconds"] == 1
    assert {d.webhook_id for d in deliveries} == {deliveries[0].webhook_id}
    assert all(d.verified for d in deliveries)


def test_a_receiver_that_never_recovers_ends_in_the_dead_letter_queue_and_redrive_delivers(
    pipeline: Pipeline, signing_secret: str
) -> None:
    with webhook_receiver(signing_secret, pipeline.info.fal_ca_file, [500] * 4) as receiver:
        job_id = pipeline.upload(
            {"prompt": "never heard", "duration": "1", "callback-url": receiver.url}
        )
        pipeline.wait_for_job(job_id)
        deliveries = receiver.wait_for(4)
        dead = pipeline.info.outputs["NotifyDeadLetterQueueUrl"]
        assert job_id in _wait_for_message(pipeline, dead, job_id)
        assert receiver.delivered() == {}

        stack_file = str(Path(pipeline.info.state_dir) / "stack.json")
        # The CLI of this checkout (the installed script may belong to another one).
        redrive = subprocess.run(
            [sys.executable, "-m", "pika_pipeline_cli", "--local-stack", stack_file, "redrive"],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(["cli", "layers/shared", "."])},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert redrive.returncode == 0, redrive.stderr
        assert "re-drove 1 message" in redrive.stdout, redrive.stdout
        (last,) = receiver.wait_for(5)[4:]

    assert last.answered == 200
    assert last.webhook_id == deliveries[0].webhook_id
    assert receiver.delivered() == {last.webhook_id: 1}


def test_a_callback_outside_callback_hosts_is_rejected_before_paying(pipeline: Pipeline) -> None:
    job = pipeline.wait_for_job(
        pipeline.upload(
            {"prompt": "call me", "duration": "1", "callback-url": "https://evil.example/hook"}
        )
    )

    assert (job["status"], job["error_code"]) == ("REJECTED", "callback_not_allowed")
    assert "CallbackHosts" in job["error_message"]
    assert pipeline.fal_submits_for(job["job_id"]) == []


def _wait_for_message(pipeline: Pipeline, queue_url: str, marker: str) -> str:
    import time

    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        for message in pipeline.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=0
        ).get("Messages", []):
            if marker in message["Body"]:
                return str(message["Body"])
    raise AssertionError(f"no message about {marker} in {queue_url}")


def _wait_for_notify_queue_drained(pipeline: Pipeline) -> None:
    import time

    queue = pipeline.info.outputs["NotifyQueueUrl"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        attributes = pipeline.sqs.get_queue_attributes(
            QueueUrl=queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if not any(int(v) for v in attributes.values()):
            return
        time.sleep(0.2)
    raise AssertionError("the notify queue never drained")


def test_an_event_lost_after_the_job_ended_is_published_again_and_posted_once(
    pipeline: Pipeline, signing_secret: str
) -> None:
    # Every attempt boto3 makes at the job's Video Completed fails: the job ends, its event does
    # not reach the bus, so nothing reaches the notifier either, until the reconciler's outbox.
    pipeline.aws_faults(service="events", operation="PutEvents", times=3, status=500)
    with webhook_receiver(signing_secret, pipeline.info.fal_ca_file) as receiver:
        job = pipeline.wait_for_job(
            pipeline.upload({"prompt": "lost event", "duration": "1", "callback-url": receiver.url})
        )
        assert job["status"] == "COMPLETED"
        assert job["event_due"]  # owed: the notifier never acknowledged it
        assert receiver.deliveries == []

        # The reconciler publishes it again once EventGraceSeconds have passed; the notifier
        # then acknowledges it.
        _reconcile_until_acknowledged(pipeline, job["job_id"])
        (delivery,) = receiver.wait_for(1)
        pipeline.reconcile()  # a later run finds nothing owed for this job

    assert delivery.verified
    assert delivery.webhook_id == f"msg_{job['job_id']}_completed"
    assert delivery.payload["type"] == "video.completed"
    assert delivery.payload["data"]["job_id"] == job["job_id"]
    assert [d.webhook_id for d in receiver.deliveries] == [delivery.webhook_id]


def _reconcile_until_acknowledged(pipeline: Pipeline, job_id: str, runs: int = 60) -> None:
    """Runs the reconciler every second until the job owes no event (EventGraceSeconds, then
    the notifier's acknowledgement)."""
    for _ in range(runs):
        pipeline.reconcile()
        if "event_due" not in (pipeline.job(job_id) or {}):
            return
        time.sleep(1)
    raise AssertionError(f"job {job_id}'s event still unacknowledged after {runs} runs")
