"""The `pika-pipeline` command, run as a user runs it, against the local stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pika_pipeline.jobs import job_id_for
from tests.support.pipeline import SAMPLE_IMAGE, Pipeline, eventbridge_body

CLI = Path(sys.executable).parent / "pika-pipeline"


def run(
    pipeline: Pipeline, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    stack_file = str(Path(pipeline.info.state_dir) / "stack.json")
    return subprocess.run(
        [str(CLI), "--local-stack", stack_file, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def _job_ids(output: str) -> list[str]:
    return [line.rsplit("job ", 1)[1] for line in output.splitlines() if " job " in line]


def test_upload_a_folder_wait_and_download(pipeline: Pipeline, tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    shutil.copy(SAMPLE_IMAGE, folder / "harbour-1.jpg")
    shutil.copy(SAMPLE_IMAGE, folder / "harbour-2.jpg")
    (folder / "notes.txt").write_text("not an image")

    uploaded = run(
        pipeline, "upload", str(folder), "--prompt", "Brume sur le port", "--duration", "1"
    )
    assert uploaded.returncode == 0, uploaded.stderr
    jobs = _job_ids(uploaded.stdout)
    assert len(jobs) == 2

    waited = run(pipeline, "wait", jobs[0])
    assert waited.returncode == 0, waited.stderr
    assert "COMPLETED" in waited.stdout
    assert "video: s3://" in waited.stdout

    downloaded = run(pipeline, "download", jobs[0], str(tmp_path / "out"))
    assert downloaded.returncode == 0, downloaded.stderr
    video = Path(downloaded.stdout.strip())
    assert video.read_bytes()[4:8] == b"ftyp"
    assert pipeline.job(jobs[0])["prompt"] == "Brume sur le port"  # type: ignore[index]


def test_status_by_key_and_the_jobs_table(pipeline: Pipeline) -> None:
    uploaded = run(pipeline, "upload", str(SAMPLE_IMAGE), "--prompt", "status", "--duration", "1")
    (job_id,) = _job_ids(uploaded.stdout)
    pipeline.wait_for_job(job_id)

    status = run(pipeline, "status", f"uploads/{SAMPLE_IMAGE.name}")
    listed = run(pipeline, "jobs", "--status", "COMPLETED", "--since", "1h")

    assert json.loads(status.stdout)["job_id"] == job_id
    assert job_id[:12] in listed.stdout
    assert "COMPLETED" in listed.stdout


def test_metadata_over_s3s_limit_is_refused_before_sending(pipeline: Pipeline) -> None:
    refused = run(pipeline, "upload", str(SAMPLE_IMAGE), "--prompt", "é" * 1500)

    assert refused.returncode == 1
    assert refused.stderr.startswith("error: the metadata is")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_wait_exits_non_zero_when_the_job_fails_and_retry_makes_a_new_job(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(outcome=["error"])
    uploaded = run(pipeline, "upload", str(SAMPLE_IMAGE), "--prompt", "retry", "--duration", "1")
    (job_id,) = _job_ids(uploaded.stdout)

    waited = run(pipeline, "wait", job_id)
    assert waited.returncode == 1
    assert "fal_error" in waited.stderr

    unconfirmed = run(pipeline, "retry", job_id)
    assert unconfirmed.returncode == 1
    assert "$0.40" in unconfirmed.stderr

    retried = run(pipeline, "retry", job_id, "--yes")
    assert retried.returncode == 0, retried.stderr
    new_job = retried.stdout.strip().rsplit(" ", 1)[1]
    assert new_job != job_id
    assert pipeline.wait_for_job(new_job)["status"] == "COMPLETED"
    assert pipeline.job(job_id)["status"] == "FAILED"  # type: ignore[index]


def test_redrive_moves_dead_letters_back_and_is_safe_to_repeat(pipeline: Pipeline) -> None:
    bucket = pipeline.own_bucket()
    key = "uploads/dead-lettered.jpg"
    version = pipeline.put_image(bucket, key, {"prompt": "from the DLQ", "duration": "1"})
    pipeline.sqs.send_message(
        QueueUrl=pipeline.info.outputs["SubmitDeadLetterQueueUrl"],
        MessageBody=eventbridge_body(bucket, key, version),
    )

    first = run(pipeline, "redrive")
    job = pipeline.wait_for_job(job_id_for(bucket=bucket, key=key, version=version))
    second = run(pipeline, "redrive")

    assert first.returncode == 0, first.stderr
    assert "re-drove" in first.stdout
    assert job["status"] == "COMPLETED"
    assert second.stdout.strip() == "re-drove 0 message(s)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "0" * 32], "error: no job 00000000000000000000000000000000"),
        (["status", "uploads/never-uploaded.png"], "error: no object 'uploads/never-uploaded.png'"),
        (["upload", "/nonexistent.png", "--prompt", "x"], "error: no such file: /nonexistent.png"),
    ],
)
def test_mistakes_get_one_clear_line_and_no_traceback(
    pipeline: Pipeline, args: list[str], message: str
) -> None:
    result = run(pipeline, *args)

    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr


def test_an_unknown_stack_is_one_clear_line(pipeline: Pipeline) -> None:
    env = {**os.environ, **pipeline.info.environment}
    result = subprocess.run(
        [str(CLI), "--stack", "no-such-stack", "jobs"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert result.returncode == 1
    assert (
        result.stderr.strip() == "error: no stack named 'no-such-stack' in this account and region"
    )
