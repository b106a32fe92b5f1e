"""Signing, message shape and retry schedule of outbound webhooks, checked with the official
``standardwebhooks`` library as any receiver would."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from pika_pipeline.errors import UploadRejected
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.events import event_detail
from pika_pipeline.notify.callbacks import callback_url_from_metadata
from pika_pipeline.notify.messages import MAX_BODY_BYTES, webhook_message
from pika_pipeline.notify.notifier import retry_delay
from pika_pipeline.notify.signing import SigningSecretInvalid, signature_header, signing_keys

OLD = "whsec_" + base64.b64encode(b"o" * 24).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()


def _signed(secret_value: str, now: datetime) -> tuple[bytes, dict[str, str]]:
    body = b'{"type":"video.completed"}'
    timestamp = int(now.timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            signing_keys(secret_value).active(now), msg_id="msg_1", timestamp=timestamp, body=body
        ),
    }
    return body, headers


def test_a_delivery_verifies_with_the_standard_library() -> None:
    body, headers = _signed(json.dumps({"current": NEW}), datetime.now(UTC))

    assert Webhook(NEW).verify(body, headers) == {"type": "video.completed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(body, headers)


def test_during_a_rotation_both_keys_verify_and_after_it_only_the_new_one() -> None:
    now = datetime.now(UTC)
    rotating = json.dumps(
        {
            "current": NEW,
            "previous": OLD,
            "previous_expires_at": (now + timedelta(hours=1)).isoformat(),
        }
    )
    body, headers = _signed(rotating, now)
    Webhook(NEW).verify(body, headers)
    Webhook(OLD).verify(body, headers)

    expired = json.dumps(
        {
            "current": NEW,
            "previous": OLD,
            "previous_expires_at": (now - timedelta(seconds=1)).isoformat(),
        }
    )
    body, headers = _signed(expired, now)
    Webhook(NEW).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(body, headers)


def test_the_generated_key_without_its_prefix_signs_as_whsec_plus_key() -> None:
    generated = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4"  # as the stack generates it
    body, headers = _signed(json.dumps({"current": generated}), datetime.now(UTC))

    Webhook(f"whsec_{generated}").verify(body, headers)


@pytest.mark.parametrize(
    "value", ["not json {", '{"previous": "x"}', json.dumps({"current": "c2hvcnQ="}), "%%%"]
)
def test_a_malformed_secret_is_refused_without_quoting_it(value: str) -> None:
    with pytest.raises(SigningSecretInvalid) as refused:
        signing_keys(value)

    assert value not in str(refused.value)


JOB_ID = "3ce927fb5d0a4e1f9b2c7d8e6f5a4b3c"


def _event(detail_type: str = "Video Completed", **detail: object) -> dict[str, object]:
    return {
        "id": "e-1",
        "source": "pika-pipeline",
        "detail-type": detail_type,
        "time": "2026-11-25T12:00:00Z",
        "detail": {"job_id": JOB_ID, "status": "COMPLETED", **detail},
    }


def test_the_body_is_the_specs_envelope_around_the_events_detail() -> None:
    event = _event(
        video={"bucket": "out", "key": "videos/j.mp4"},
        correlation_id="sku-123",
        batch="spring",
        callback_url="https://hooks.example.com/x",
    )

    message = webhook_message(event, presign=lambda bucket, key: f"https://{bucket}/{key}?sig")

    body = json.loads(message.body)
    assert (message.msg_id, body["type"], body["timestamp"]) == (
        f"msg_{JOB_ID}_completed",
        "video.completed",
        "2026-11-25T12:00:00Z",
    )
    assert body["data"]["correlation_id"] == "sku-123"
    assert body["data"]["batch"] == "spring"
    assert body["data"]["download_url"] == "https://out/videos/j.mp4?sig"
    assert "callback_url" not in body["data"]
    assert message.callback_url == "https://hooks.example.com/x"


def test_a_finished_jobs_webhook_names_its_correlation_id_and_batch() -> None:
    job = {
        "job_id": JOB_ID,
        "status": "COMPLETED",
        "correlation_id": "sku-123",
        "batch": "spring drop",
        "output_bucket": "out",
        "output_key": "videos/spring drop/sku 123.mp4",
        "updated_at": "2026-11-25T12:00:00Z",
    }

    event = _event() | {"detail": event_detail(job)}
    message = webhook_message(event, presign=lambda bucket, key: f"https://{bucket}/{key}?sig")

    data = json.loads(message.body)["data"]
    assert (data["correlation_id"], data["batch"]) == ("sku-123", "spring drop")


def test_a_batch_summary_published_again_is_the_same_message_for_receivers() -> None:
    """After a crash the reconciler publishes a summary again: a new EventBridge event, the same
    webhook-id."""

    def batch_summary(event_id: str, batch: str = "spring 2026/sku.x", summary: int = 1) -> str:
        event = _event("Batch Completed", batch=batch, summary=summary) | {"id": event_id}
        return webhook_message(event, presign=lambda bucket, key: "unused").msg_id

    first = batch_summary("e-1")

    assert batch_summary("e-2") == first
    assert batch_summary("e-2", summary=2) != first
    assert batch_summary("e-2", batch="autumn") != first
    assert re.fullmatch(r"msg_[A-Za-z0-9_-]+", first)  # no "." from the uploader's batch name


def test_a_job_event_published_again_is_the_same_message_for_receivers() -> None:
    """The reconciler publishes a job's event again until the notifier has it (a new EventBridge
    event each time): receivers deduplicate on the webhook-id, which names the job and how it
    ended, not the event."""

    def video_event(event_id: str, detail_type: str = "Video Completed", **detail: object) -> str:
        event = _event(detail_type, **detail) | {"id": event_id}
        return webhook_message(event, presign=lambda bucket, key: "unused").msg_id

    first = video_event("e-1")

    assert first == f"msg_{JOB_ID}_completed"
    assert video_event("e-2") == first
    assert video_event("e-2", job_id="ab" * 16) != first
    # A job the submit path failed, completed after all by a late result: that is news.
    assert video_event("e-3", "Video Failed", status="FAILED") == f"msg_{JOB_ID}_failed"
    # Not the pipeline's job id (the detail is not what the pipeline publishes): the event's.
    assert video_event("e-4", job_id="../x.y") == "msg_e-4"


def test_the_body_stays_under_20_kb_whatever_the_prompt_and_error() -> None:
    event = _event(
        "Video Failed",
        status="FAILED",
        prompt="é" * 5000,
        error={"code": "fal_error", "message": "x" * 50_000},
    )

    body = webhook_message(event, presign=lambda b, k: "").body

    assert len(body) < MAX_BODY_BYTES
    data = json.loads(body)["data"]
    assert data["truncated"] is True
    assert data["error"]["code"] == "fal_error"


def test_retries_follow_the_schedule_and_repeat_its_last_delay() -> None:
    schedule = (5, 300, 1800, 7200, 18000, 36000)

    assert [retry_delay(n, schedule) for n in range(1, 9)] == [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
        36000,
    ]
    assert sum(retry_delay(n, schedule) for n in range(1, 12)) / 86400 == pytest.approx(2.8, 0.05)


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("https://hooks.example.com/x", ()),  # CallbackHosts empty: callbacks are off
        ("http://hooks.example.com/x", ("hooks.example.com",)),
        ("https://evil.example/x", ("hooks.example.com",)),
        ("https://hooks.example.com/x?token=abc", ("hooks.example.com",)),
        ("https://user:pw@hooks.example.com/x", ("hooks.example.com",)),
        ("https://169.254.169.254/latest", ("hooks.example.com",)),
    ],
)
def test_callbacks_callback_hosts_do_not_allow_are_rejected(url: str, hosts: tuple[str]) -> None:
    with pytest.raises(UploadRejected) as rejected:
        callback_url_from_metadata({"callback-url": url}, allowed_hosts=hosts)

    assert rejected.value.code == ErrorCode.CALLBACK_NOT_ALLOWED


def test_an_allowed_callback_or_none_is_accepted() -> None:
    hosts = ("example.com",)
    url = "https://hooks.example.com/pika"

    assert callback_url_from_metadata({"callback-url": url}, allowed_hosts=hosts) == url
    assert callback_url_from_metadata({"callback-url": " "}, allowed_hosts=()) is None
    assert callback_url_from_metadata({}, allowed_hosts=()) is None
