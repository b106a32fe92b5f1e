"""The fal emulator serves the three Pika endpoints, each with its own input schema as fal's model
pages give it, and records the lifecycle preference each submit came with. Driven through the
real fal_client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.pipeline import Pipeline, eventually

# Runs in its own process: fal_client reads its host from the environment at import.
CLIENT = textwrap.dedent(
    """
    import json, sys
    import fal_client

    spec = json.loads(sys.stdin.read())
    client = fal_client.SyncClient(key=spec["key"])
    seen = []
    for app, duration in spec["submits"]:
        arguments = {"image_url": spec["image_url"], "prompt": "a pier", "duration": duration}
        try:
            handle = client.submit(app, arguments=arguments, headers=spec["headers"])
            seen.append({"accepted": handle.request_id})
        except fal_client.FalClientHTTPError as exc:
            seen.append({"status": exc.status_code, "detail": exc.message})
    print(json.dumps(seen))
    """
)
V2_1 = "fal-ai/pika/v2.1/image-to-video"
V2_2 = "fal-ai/pika/v2.2/image-to-video"
TURBO = "fal-ai/pika/v2/turbo/image-to-video"
LIFECYCLE = {"X-Fal-Object-Lifecycle-Preference": '{"expiration_duration_seconds": 3600}'}


@pytest.fixture(autouse=True)
def small_frames(pipeline: Pipeline) -> Iterator[None]:
    """Tiny renders, so the requests these tests make finish at once."""
    pipeline.fal_faults(fast=True)
    yield
    pipeline.fal_faults(fast=False)


def _submit(pipeline: Pipeline, submits: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """fal_client's answers to these submits, once every accepted one has finished (so none
    holds the account's concurrency in a later test)."""
    key_secret = pipeline.info.functions["SubmitFunction"]["environment"]["FAL_KEY_SECRET_NAME"]
    key = pipeline.secrets.get_secret_value(SecretId=key_secret)["SecretString"].strip()
    bucket = pipeline.own_bucket()
    pipeline.put_image(bucket, "pier.jpg", {})
    image_url = pipeline.s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "pier.jpg"}, ExpiresIn=600
    )
    result = subprocess.run(
        [sys.executable, "-c", CLIENT],
        input=json.dumps(
            {"key": key, "image_url": image_url, "submits": submits, "headers": LIFECYCLE}
        ),
        env={
            **os.environ,
            "FAL_QUEUE_RUN_HOST": pipeline.info.fal_url.removeprefix("https://"),
            "SSL_CERT_FILE": pipeline.info.fal_ca_file,
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen: list[dict[str, Any]] = json.loads(result.stdout)
    accepted = {answer["accepted"] for answer in seen if "accepted" in answer}
    eventually(
        lambda: (
            True
            if all(
                r["status"] == "COMPLETED"
                for r in pipeline.fal_requests()
                if r["request_id"] in accepted
            )
            else None
        )
    )
    return seen


def test_each_endpoint_checks_the_duration_by_its_own_schema(pipeline: Pipeline) -> None:
    seen = _submit(pipeline, [(V2_2, 7), (V2_2, 10), (V2_1, 7), (TURBO, 7)])

    refused, *accepted = seen
    assert refused["status"] == 422
    assert refused["detail"][0]["loc"] == ["body", "duration"]
    assert all("accepted" in answer for answer in accepted), accepted
    apps = {r["request_id"]: r["app"] for r in pipeline.fal_requests()}
    assert [apps[answer["accepted"]] for answer in accepted] == [V2_2, V2_1, TURBO]


def test_an_endpoint_fal_does_not_serve_is_not_found(pipeline: Pipeline) -> None:
    (answer,) = _submit(pipeline, [("fal-ai/pika/v2.2/pikaframes", 5)])

    assert answer["status"] == 404


def test_the_lifecycle_preference_of_each_submit_is_recorded(pipeline: Pipeline) -> None:
    (answer,) = _submit(pipeline, [(TURBO, 5)])

    (request,) = [r for r in pipeline.fal_requests() if r["request_id"] == answer["accepted"]]
    assert json.loads(request["lifecycle_preference"]) == {"expiration_duration_seconds": 3600}
