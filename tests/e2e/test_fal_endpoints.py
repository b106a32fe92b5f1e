"""A deployment on Pika v2.2 (FalEndpoint): its duration rule is checked before anything is
paid, its jobs complete and record where they were sent and what they cost, and fal is told when
to expire its copy of each video (FalMediaLifetimeSeconds)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from local.stack import LocalStack
from tests.support.pipeline import Pipeline

V2_2 = "fal-ai/pika/v2.2/image-to-video"
# Above this stack's minimum (7200 + 8 + 3 x (300 + 1)), and unlike the default, so the test
# sees the parameter arrive rather than a constant.
MEDIA_LIFETIME_SECONDS = 9000


@pytest.fixture(scope="module")
def v22(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A stack of its own, deployed with FalEndpoint set to v2.2 (time compressed as in
    tests/conftest.py)."""
    parameters = {
        "SubmitRetryBaseSeconds": "1",
        "FalTimeoutSeconds": "2",
        "ReconcileAfterSeconds": "1",
        "JobDeadlineSeconds": "8",
        "FalEndpoint": V2_2,
        "FalMediaLifetimeSeconds": str(MEDIA_LIFETIME_SECONDS),
    }
    state_dir = tmp_path_factory.mktemp("local-stack-v22")
    with LocalStack(state_dir, parameters=parameters, run_schedules=False) as info:
        pipeline = Pipeline(info)
        pipeline.fal_faults(fast=True)  # small frames: the test is about the endpoint, not pixels
        yield pipeline


def test_a_duration_v2_2_does_not_offer_is_rejected_before_anything_is_paid(v22: Pipeline) -> None:
    job_id = v22.upload({"prompt": "a lighthouse at dusk", "duration": "7"})

    job = v22.wait_for_job(job_id)

    assert (job["status"], job["error_code"]) == ("REJECTED", "invalid_duration")
    assert job["error_message"] == f"duration must be 5 or 10 seconds on {V2_2}, got 7."
    # Rejected before the claim: fal never saw it, and nothing was priced.
    assert v22.fal_submits_for(job_id) == []
    assert "price_usd" not in job


def test_a_job_on_v2_2_completes_and_records_its_endpoint_and_price(v22: Pipeline) -> None:
    job_id = v22.upload({"prompt": "a lighthouse at dusk", "duration": "10", "resolution": "1080p"})

    job = v22.wait_for_job(job_id)

    assert job["status"] == "COMPLETED", job
    assert job["fal_endpoint"] == V2_2
    # fal's page: $0.45 for 5 s at 1080p; 10 s is charged as two 5 s blocks (fal/prices.py).
    assert job["price_usd"] == Decimal("0.90")
    (request,) = v22.fal_requests_for(job_id)
    assert request["app"] == V2_2
    assert request["arguments"]["duration"] == 10


def test_fal_is_told_to_expire_its_copy_of_the_video(v22: Pipeline) -> None:
    job_id = v22.upload({"prompt": "a lighthouse at dusk", "duration": "5"})
    v22.wait_for_job(job_id)

    (request,) = v22.fal_requests_for(job_id)

    assert json.loads(request["lifecycle_preference"]) == {
        "expiration_duration_seconds": MEDIA_LIFETIME_SECONDS
    }


def test_a_v2_2_job_whose_webhook_was_lost_is_settled_at_its_endpoint(v22: Pipeline) -> None:
    v22.fal_faults(delivery=["drop"])
    job_id = v22.upload({"prompt": "a lighthouse at dusk", "duration": "5"})
    v22.wait_for_status(job_id, "SUBMITTED")

    job = v22.reconcile_until_final(job_id)

    assert (job["status"], job["fal_endpoint"]) == ("COMPLETED", V2_2)
    assert job["price_usd"] == Decimal("0.20")
