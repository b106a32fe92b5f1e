"""The fal emulator behaves like a fal account: it runs at most its concurrency limit at once,
keeps the rest IN_QUEUE with their positions, and drops a request that could not start within
its start timeout with fal's timeout error. Driven through the real fal_client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

from tests.support.pipeline import Pipeline

# Runs in its own process: fal_client reads its host from the environment at import.
CLIENT = textwrap.dedent(
    """
    import json, sys, time
    import fal_client

    spec = json.loads(sys.stdin.read())
    client = fal_client.SyncClient(key=spec["key"])
    app = "fal-ai/pika/v2.1/image-to-video"
    arguments = {"image_url": spec["image_url"], "prompt": "a queue", "duration": 1}
    handles = [
        client.submit(app, arguments=arguments, start_timeout=timeout)
        for timeout in spec["start_timeouts"]
    ]
    time.sleep(spec["wait"])
    seen = []
    for handle in handles:
        status = handle.status()
        entry = {"state": type(status).__name__,
                 "position": getattr(status, "position", None)}
        if isinstance(status, fal_client.Completed):
            try:
                handle.get()
            except fal_client.FalClientHTTPError as exc:
                entry["error"] = exc.status_code
                entry["timeout_type"] = exc.response_headers.get("x-fal-request-timeout-type")
        seen.append(entry)
    print(json.dumps(seen))
    """
)


def _run_client(pipeline: Pipeline, **spec: Any) -> list[dict[str, Any]]:
    key_secret = pipeline.info.functions["SubmitFunction"]["environment"]["FAL_KEY_SECRET_NAME"]
    key = pipeline.secrets.get_secret_value(SecretId=key_secret)["SecretString"].strip()
    env = {
        **os.environ,
        "FAL_QUEUE_RUN_HOST": pipeline.info.fal_url.removeprefix("https://"),
        "SSL_CERT_FILE": pipeline.info.fal_ca_file,
    }
    result = subprocess.run(
        [sys.executable, "-c", CLIENT],
        input=json.dumps({**spec, "key": key}),
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen: list[dict[str, Any]] = json.loads(result.stdout)
    return seen


def _image_url(pipeline: Pipeline) -> str:
    bucket = pipeline.own_bucket()
    pipeline.put_image(bucket, "queue/photo.jpg", {})
    url: str = pipeline.s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "queue/photo.jpg"}, ExpiresIn=600
    )
    return url


def test_requests_past_the_accounts_concurrency_wait_in_line_and_time_out_unstarted(
    pipeline: Pipeline,
) -> None:
    concurrency = pipeline.fal_emulator_state()["concurrency"]
    pipeline.fal_account(concurrency=1)
    pipeline.fal_faults(processing_seconds=4)
    try:
        first, second, third = _run_client(
            pipeline, image_url=_image_url(pipeline), start_timeouts=[60, 60, 2], wait=2.5
        )
    finally:
        pipeline.fal_account(concurrency=concurrency)
        pipeline.fal_faults(processing_seconds=0)

    assert first["state"] == "InProgress"
    # The second waits its turn; the third could not start within 2 s and was dropped.
    assert (second["state"], second["position"]) == ("Queued", 0)
    assert (third["state"], third["error"], third["timeout_type"]) == ("Completed", 504, "user")
    seen = pipeline.fal_emulator_state()
    assert seen["peak_outstanding"] >= 3
    # The account's record of its runners (the benchmark's busy slot-time): the first took one,
    # the dropped one never did.
    ours = [r for r in seen["requests"] if r["arguments"]["prompt"] == "a queue"][-3:]
    assert ours[0]["started_at"] is not None
    assert (ours[2]["started_at"], ours[2]["finished_at"]) == (None, None)
