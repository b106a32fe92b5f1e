"""What the webhook answers to deliveries that are signed as fal signs them but are still wrong.

The fal emulator signs any body here (``/_emulator/sign``), so each check after the signature is
reached: the body's request id against the signed one, the body's shape, the job's existence.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from pika_pipeline.webhook.tokens import new_attempt, webhook_url_for
from tests.support.pipeline import Pipeline, without_outbox


@pytest.fixture(scope="module")
def finished(pipeline: Pipeline) -> dict[str, Any]:
    job_id = pipeline.upload({"prompt": "signed but wrong", "duration": "1"})
    job = pipeline.wait_for_status(job_id, "COMPLETED", timeout=60)
    return {"job": job, "delivery": pipeline.delivered(job_id)}


def _signed(pipeline: Pipeline, request_id: str, body: bytes) -> dict[str, str]:
    return pipeline.fal_signature(request_id, body)


def test_a_body_naming_another_request_than_its_signature_is_refused(
    pipeline: Pipeline, finished: dict[str, Any]
) -> None:
    delivery = finished["delivery"]
    envelope = json.loads(delivery["body"])
    signed_for = str(uuid.uuid4())
    body = json.dumps(envelope, sort_keys=True).encode()

    status, answer = pipeline.post_webhook(
        delivery["url"], body, _signed(pipeline, signed_for, body)
    )

    assert (status, answer["error"]) == (401, "request_id_mismatch")
    assert pipeline.job_state(finished["job"]["job_id"]) == without_outbox(finished["job"])


@pytest.mark.parametrize(
    "body",
    [b"not json at all", b'["a", "list"]', b'{"status": "OK"}', b'{"request_id": 7}'],
    ids=["not-json", "a-list", "no-request-id", "request-id-not-text"],
)
def test_a_signed_body_that_is_not_a_fal_delivery_is_refused(
    pipeline: Pipeline, finished: dict[str, Any], body: bytes
) -> None:
    delivery = finished["delivery"]
    request_id = finished["job"]["request_id"]

    status, answer = pipeline.post_webhook(
        delivery["url"], body, _signed(pipeline, request_id, body)
    )

    assert (status, answer["error"]) == (400, "malformed_body")
    assert pipeline.job_state(finished["job"]["job_id"]) == without_outbox(finished["job"])


def test_a_signed_body_that_is_not_utf8_text_is_refused_as_malformed(
    pipeline: Pipeline, finished: dict[str, Any]
) -> None:
    delivery = finished["delivery"]
    body = b"\xff\xfe{}"  # not UTF-8: a non-text content type makes Function URLs base64 it
    headers = {
        **_signed(pipeline, finished["job"]["request_id"], body),
        "Content-Type": "application/octet-stream",
    }

    status, answer = pipeline.post_webhook(delivery["url"], body, headers)

    assert (status, answer["error"]) == (400, "malformed_body")
    assert pipeline.job_state(finished["job"]["job_id"]) == without_outbox(finished["job"])


def test_a_delivery_for_a_job_that_no_longer_exists_is_acknowledged_and_writes_nothing(
    pipeline: Pipeline, finished: dict[str, Any]
) -> None:
    # A URL this stack made (its token is right) for a job whose record is gone (retention):
    # fal would retry anything but a 2xx for two hours, and no retry can help.
    gone = uuid.uuid4().hex
    url = webhook_url_for(
        pipeline.info.webhook_url,
        gone,
        new_attempt(),
        pipeline.token_key(),
        expires_at=int(time.time()) + 3600,
    )
    body = finished["delivery"]["body"].encode()
    request_id = finished["job"]["request_id"]

    status, answer = pipeline.post_webhook(url, body, _signed(pipeline, request_id, body))

    assert (status, answer["outcome"]) == (200, "unknown_job")
    assert pipeline.job(gone) is None
    stored = pipeline.s3.list_objects_v2(Bucket=pipeline.output_bucket, Prefix=f"videos/{gone}")
    assert stored.get("KeyCount", 0) == 0
