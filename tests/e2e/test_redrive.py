"""Once fal is back, re-driving the dead letters finishes the jobs fal never accepted."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from pika_pipeline.jobs.identity import job_id_for
from tests.support.pipeline import Pipeline, eventbridge_body

CLI = Path(sys.executable).parent / "pika-pipeline"


def test_a_job_failed_while_fal_was_down_completes_when_its_dead_letter_is_redriven(
    pipeline: Pipeline,
) -> None:
    # given an upload whose every attempt met a fal outage, as a pipeline without the dispatch
    # gate left it (it failed the job and dead-lettered the event; the gate keeps such a job in
    # the jobs table instead, but dead letters from before an upgrade stay re-drivable)
    marker = f"redrive-{uuid.uuid4().hex[:8]}"
    key = f"uploads/{marker}.jpg"
    metadata = {"prompt": "after the outage", "duration": "1"}
    bucket = pipeline.own_bucket()  # no rule watches it: only the re-drive sends its event
    version = pipeline.put_image(bucket, key, metadata)
    job_id = job_id_for(bucket=bucket, key=key, version=version)
    pipeline.table.put_item(
        Item={
            "job_id": job_id,
            "status": "FAILED",
            "source_bucket": bucket,
            "source_key": key,
            "source_version": version,
            "source_version_id": version,
            "error_code": "fal_unavailable",
            "error_message": "fal answered 503 (after every attempt)",
            "attempts": 5,
            "created_at": "2026-12-01T10:00:00.000+00:00",
        }
    )
    pipeline.sqs.send_message(
        QueueUrl=pipeline.info.outputs["SubmitDeadLetterQueueUrl"],
        MessageBody=eventbridge_body(bucket, key, version),
    )
    failed = pipeline.job(job_id)
    assert failed is not None

    # when the operator re-drives the dead letters, fal being back
    stack_file = str(Path(pipeline.info.state_dir) / "stack.json")
    redrive = subprocess.run(
        [str(CLI), "--local-stack", stack_file, "redrive"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # then the same job (not a new one) is submitted once and completes
    assert redrive.returncode == 0, redrive.stderr
    job = pipeline.wait_for_status(job_id, "COMPLETED", timeout=90)
    assert job["created_at"] == failed["created_at"]
    assert len(pipeline.fal_requests_for(job_id)) == 1
    assert not pipeline.dead_lettered(marker, take=False)
