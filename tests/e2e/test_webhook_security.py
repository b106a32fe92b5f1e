"""The webhook URL is public: only fal, and only for this job, can change a job through it."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.pipeline import Pipeline, without_outbox

SIGNATURE_HEADERS = (
    "X-Fal-Webhook-Request-Id",
    "X-Fal-Webhook-User-Id",
    "X-Fal-Webhook-Timestamp",
    "X-Fal-Webhook-Signature",
)


@pytest.fixture(scope="module")
def finished(pipeline: Pipeline) -> dict[str, Any]:
    """A completed job and the genuine, fal-signed delivery that completed it."""
    job_id = pipeline.upload({"prompt": "harbour lights", "duration": "1"})
    job = pipeline.wait_for_job(job_id)
    assert job["status"] == "COMPLETED"
    return {"job": job, "delivery": pipeline.delivered(job_id)}


@pytest.fixture
def waiting_job(pipeline: Pipeline) -> dict[str, Any]:
    """A submitted job whose webhook fal has not delivered (the emulator drops it)."""
    pipeline.fal_faults(delivery=["drop"])
    job_id = pipeline.upload({"prompt": "a job left waiting", "duration": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        requests = pipeline.fal_requests_for(job_id)
        job = pipeline.job(job_id)
        if requests and requests[0]["status"] == "COMPLETED" and job and "request_id" in job:
            return {"job": job, "request": requests[0]}
        time.sleep(0.25)
    raise AssertionError("the job never reached fal")


def _resign(body: bytes, headers: dict[str, str], key: Ed25519PrivateKey) -> dict[str, str]:
    stamp = str(int(time.time()))
    message = "\n".join(
        (
            headers["X-Fal-Webhook-Request-Id"],
            headers["X-Fal-Webhook-User-Id"],
            stamp,
            hashlib.sha256(body).hexdigest(),
        )
    )
    return {
        **headers,
        "X-Fal-Webhook-Timestamp": stamp,
        "X-Fal-Webhook-Signature": key.sign(message.encode()).hex(),
    }


# A signature no key verifies: 401, or 503 while the function may not refetch fal's keys yet (it
# could be a newly rotated key; fal delivers a 5xx again). Never accepted, either way.
NOT_FALS_SIGNATURE = {(401, "bad_signature"), (503, "signing_key_not_yet_known")}


def _unchanged(pipeline: Pipeline, job: dict[str, Any]) -> bool:
    return pipeline.job_state(job["job_id"]) == without_outbox(job)


def test_a_replayed_delivery_is_acknowledged_and_changes_nothing(
    pipeline: Pipeline, finished: dict[str, Any]
) -> None:
    delivery = finished["delivery"]

    status, body = pipeline.post_webhook(
        delivery["url"], delivery["body"].encode(), delivery["headers"]
    )

    assert (status, body["outcome"]) == (200, "duplicate")
    assert _unchanged(pipeline, finished["job"])


def test_a_tampered_body_is_refused(pipeline: Pipeline, finished: dict[str, Any]) -> None:
    delivery = finished["delivery"]
    tampered = delivery["body"].replace('"status": "OK"', '"status": "ERROR"').encode()
    assert tampered != delivery["body"].encode()

    status, answer = pipeline.post_webhook(delivery["url"], tampered, delivery["headers"])

    assert (status, answer["error"]) in NOT_FALS_SIGNATURE
    assert _unchanged(pipeline, finished["job"])


def test_a_delivery_signed_with_another_key_is_refused(
    pipeline: Pipeline, waiting_job: dict[str, Any]
) -> None:
    job = waiting_job["job"]
    envelope = {
        "request_id": job["request_id"],
        "gateway_request_id": job["request_id"],
        "status": "OK",
        "error": None,
        "payload": {"video": {"url": "https://attacker.example/evil.mp4"}},
    }
    url = waiting_job["request"]["webhook_url"]
    body = json.dumps(envelope, sort_keys=True).encode()
    headers = _resign(
        body,
        {
            "X-Fal-Webhook-Request-Id": job["request_id"],
            "X-Fal-Webhook-User-Id": "local-fal-user",
            "X-Fal-Webhook-Timestamp": "0",
            "X-Fal-Webhook-Signature": "",
        },
        Ed25519PrivateKey.generate(),  # not fal's key
    )

    status, answer = pipeline.post_webhook(url, body, headers)

    assert (status, answer["error"]) in NOT_FALS_SIGNATURE
    assert _unchanged(pipeline, job)


@pytest.mark.parametrize("missing", SIGNATURE_HEADERS)
def test_a_delivery_missing_a_signature_header_is_refused(
    pipeline: Pipeline, finished: dict[str, Any], missing: str
) -> None:
    delivery = finished["delivery"]
    headers = {k: v for k, v in delivery["headers"].items() if k != missing}

    status, answer = pipeline.post_webhook(delivery["url"], delivery["body"].encode(), headers)

    assert (status, answer["error"]) == (401, "missing_signature_header")


@pytest.mark.parametrize("offset", [-301, 301], ids=["past", "future"])
def test_a_timestamp_outside_five_minutes_is_refused(
    pipeline: Pipeline, finished: dict[str, Any], offset: int
) -> None:
    delivery = finished["delivery"]
    headers = {**delivery["headers"], "X-Fal-Webhook-Timestamp": str(int(time.time()) + offset)}

    status, answer = pipeline.post_webhook(delivery["url"], delivery["body"].encode(), headers)

    assert (status, answer["error"]) == (401, "stale_timestamp")


def test_a_body_the_function_url_base64_encodes_is_verified_on_its_raw_bytes(
    pipeline: Pipeline, finished: dict[str, Any]
) -> None:
    delivery = finished["delivery"]
    # A non-text content type makes Function URLs pass the body base64-encoded.
    headers = {**delivery["headers"], "Content-Type": "application/octet-stream"}

    status, answer = pipeline.post_webhook(delivery["url"], delivery["body"].encode(), headers)

    assert (status, answer["outcome"]) == (200, "duplicate")


def test_a_genuine_delivery_for_one_job_cannot_complete_another(
    pipeline: Pipeline, finished: dict[str, Any], waiting_job: dict[str, Any]
) -> None:
    delivery = finished["delivery"]
    other_url = waiting_job["request"]["webhook_url"]  # the other job's own, valid token

    status, answer = pipeline.post_webhook(
        other_url, delivery["body"].encode(), delivery["headers"]
    )

    assert (status, answer["error"]) == (401, "foreign_request_id")
    assert _unchanged(pipeline, waiting_job["job"])


@pytest.fixture
def lost_call(pipeline: Pipeline) -> dict[str, Any]:
    """A job whose first call timed out although fal queued it (that call's URL stays open for
    its result), and whose second call was answered; neither result is ever delivered. fal's
    history does not list the first request yet, so the reconciler makes the second call."""
    pipeline.fal_faults(submit_delay=[3], delivery=["drop", "drop"], history=["hidden"])
    job_id = pipeline.upload({"prompt": "first answer lost", "duration": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        requests = pipeline.fal_requests_for(job_id)
        job = pipeline.job(job_id) or {}
        if len(requests) == 1 and job.get("last_error") and "request_id" not in job:
            pipeline.reconcile()  # the gate leaves a call fal did not answer to the reconciler
        if len(requests) == 2 and "request_id" in job:
            url = requests[0]["webhook_url"]
            assert job["open_attempts"] == {parse_qs(urlsplit(url).query)["attempt"][0]}
            return {"job": job, "url": url}
        time.sleep(0.25)
    raise AssertionError("the job never made its second call")


def test_another_jobs_result_is_refused_even_on_a_call_whose_answer_was_lost(
    pipeline: Pipeline, finished: dict[str, Any], lost_call: dict[str, Any]
) -> None:
    delivery = finished["delivery"]

    status, answer = pipeline.post_webhook(
        lost_call["url"], delivery["body"].encode(), delivery["headers"]
    )

    assert (status, answer["error"]) == (401, "foreign_request_id")
    assert _unchanged(pipeline, lost_call["job"])


def test_a_result_another_job_took_through_its_own_lost_call_is_refused_too(
    pipeline: Pipeline, lost_call: dict[str, Any]
) -> None:
    # The other job learned its request id only from the result: its call's answer was lost,
    # its retry was refused (FAILED), then the late result completed it. That id is still known
    # to be the other job's.
    pipeline.fal_faults(
        submit=[None, 401],
        submit_delay=[3],
        delivery=["late"],
        late_seconds=12,
        history=["hidden"],
    )
    try:
        other_id = pipeline.upload({"prompt": "completed by its lost call", "duration": "1"})
        other = pipeline.wait_for_status(other_id, "COMPLETED", timeout=45)
    finally:
        pipeline.fal_faults(late_seconds=5)
    (request,) = pipeline.fal_requests_for(other_id)
    assert other["completed_request_id"] == request["request_id"]
    # The emulator books a delivery once the webhook has answered, just after the job changed.
    delivery = pipeline.delivered(other_id)
    assert delivery["status"] == 200

    status, answer = pipeline.post_webhook(
        lost_call["url"], delivery["body"].encode(), delivery["headers"]
    )

    assert (status, answer["error"]) == (401, "foreign_request_id")
    assert _unchanged(pipeline, lost_call["job"])


@pytest.mark.parametrize(
    "query",
    [
        "",
        "job_id={job}",
        "job_id={job}&attempt={attempt}",
        "job_id={job}&attempt={attempt}&token=0000",
        "job_id=someone-else&attempt={attempt}&token={token}",
        "job_id={job}&attempt=0000000000000000&token={token}",
        "job_id={job}&token={token}",
        "job_id={job}&attempt={attempt}&token={token}",  # a URL from before tokens expired
        "job_id={job}&attempt={attempt}&expires=99999999999&token={token}",  # expiry moved
    ],
)
def test_a_url_without_this_jobs_token_is_refused(
    pipeline: Pipeline, finished: dict[str, Any], query: str
) -> None:
    delivery = finished["delivery"]
    genuine_query = delivery["url"].split("?", 1)[1]
    params = dict(part.split("=", 1) for part in genuine_query.split("&"))
    url = f"{pipeline.info.webhook_url}?" + query.format(
        job=params["job_id"], attempt=params["attempt"], token=params["token"]
    )

    status, answer = pipeline.post_webhook(url, delivery["body"].encode(), delivery["headers"])

    assert (status, answer["error"]) == (401, "bad_token")


def test_an_oversized_body_is_refused_before_parsing(
    pipeline: Pipeline, finished: dict[str, Any]
) -> None:
    delivery = finished["delivery"]

    status, answer = pipeline.post_webhook(
        delivery["url"], b"{" + b" " * (300 * 1024) + b"}", delivery["headers"]
    )

    assert (status, answer["error"]) == (413, "body_too_large")


def test_the_url_of_a_call_fal_refused_can_never_complete_the_job(pipeline: Pipeline) -> None:
    pipeline.fal_faults(submit=[422])
    job_id = pipeline.upload({"prompt": "refused by fal", "duration": "1"})
    job = pipeline.wait_for_job(job_id)
    assert (job["status"], job["error_code"]) == ("FAILED", "fal_validation")
    assert "open_attempts" not in job  # fal queued nothing for that call: it is closed
    (refused,) = pipeline.refused_fal_submits_for(job_id)
    # Someone who saw the URL makes a fal request of their own with it: fal really signs that.
    envelope = {
        "request_id": "their-own-request",
        "gateway_request_id": "their-own-request",
        "status": "OK",
        "error": None,
        "payload": {"video": {"url": "https://v3.fal.media/files/their-video.mp4"}},
    }
    body = json.dumps(envelope, sort_keys=True).encode()

    status, answer = pipeline.post_webhook(
        refused["webhook_url"], body, pipeline.fal_signature("their-own-request", body)
    )

    assert (status, answer["error"]) == (401, "foreign_request_id")
    assert _unchanged(pipeline, job)
