"""The sample events in events/ have the shapes AWS delivers and, for webhooks, fal's signature."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from local.template import REPO_ROOT
from pika_pipeline.fal.delivery import FalDelivery
from pika_pipeline.submit.uploads import uploads_from_message
from pika_pipeline.webhook.verifier import JwksKeys, WebhookVerifier

EVENTS = REPO_ROOT / "events"
# The sample deliveries were signed with this throwaway key, derived from a fixed seed.
SAMPLE_KEY = Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"pika-pipeline sample events").digest()
)


def _load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def _sample_jwks(url: str) -> bytes:
    raw = SAMPLE_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]}).encode()


def test_there_is_a_sample_for_every_function_and_case() -> None:
    names = {path.name for path in EVENTS.glob("*.json")}
    assert names == {
        "submit-eventbridge.json",
        "submit-s3-notification.json",
        "webhook-ok.json",
        "webhook-error.json",
        "reconciler-schedule.json",
        "notifier-video-completed.json",
    }


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("submit-eventbridge.json", "uploads/harbour at dawn.jpg"),
        ("submit-s3-notification.json", "uploads/my photo été.png"),
    ],
)
def test_the_submit_samples_are_sqs_batches_naming_one_upload(name: str, key: str) -> None:
    (record,) = _load(name)["Records"]

    (upload,) = uploads_from_message(record["body"])

    assert record["eventSource"] == "aws:sqs"
    assert upload.key == key
    assert upload.version_id


@pytest.mark.parametrize(
    ("name", "status"), [("webhook-ok.json", "OK"), ("webhook-error.json", "ERROR")]
)
def test_the_webhook_samples_are_signed_function_url_events(name: str, status: str) -> None:
    event = _load(name)
    body = event["body"].encode()
    headers = event["headers"]
    verifier = WebhookVerifier(
        JwksKeys("https://example.invalid/jwks.json", _sample_jwks),
        clock=lambda: int(headers["x-fal-webhook-timestamp"]),
    )

    request_id = verifier.verify(headers, body)

    assert event["version"] == "2.0"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert set(event["queryStringParameters"]) == {"job_id", "attempt", "expires", "token"}
    delivery = FalDelivery.from_json(body)
    assert (delivery.request_id, delivery.status) == (request_id, status)


def test_the_reconciler_sample_is_a_scheduled_event() -> None:
    event = _load("reconciler-schedule.json")
    assert (event["source"], event["detail-type"]) == ("aws.events", "Scheduled Event")


def test_the_notifier_sample_is_an_sqs_batch_of_one_completion_event() -> None:
    from pika_pipeline.notify.messages import webhook_message

    (record,) = _load("notifier-video-completed.json")["Records"]

    message = webhook_message(json.loads(record["body"]), presign=lambda b, k: f"https://{b}/{k}")

    assert record["eventSource"] == "aws:sqs"
    assert message.type == "video.completed"
    assert message.callback_url == "https://hooks.example.com/pika"
    assert json.loads(message.body)["data"]["download_url"].endswith(".mp4")
