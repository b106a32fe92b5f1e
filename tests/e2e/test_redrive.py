"""Once fal is back, re-driving the dead letters finishes the jobs fal never accepted."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.pipeline import Pipeline

CLI = Path(sys.executable).parent / "pika-pipeline"


def test_a_job_failed_while_fal_was_down_completes_when_its_dead_letter_is_redriven(
    pipeline: Pipeline,
) -> None:
    # given an upload whose every attempt met a fal outage
    marker = f"redrive-{uuid.uuid4().hex[:8]}"
    pipeline.fal_faults(submit=[503] * 5)
    job_id = pipeline.upload({"prompt": "after the outage", "duration": "1"}, name=f"{marker}.jpg")
    failed = pipeline.wait_for_job(job_id, timeout=90)
    assert (failed["status"], failed["error_code"]) == ("FAILED", "fal_unavailable")
    assert marker in pipeline.wait_for_dead_letter(marker, timeout=60, take=False)

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
