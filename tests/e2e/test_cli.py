"""The `pika-pipeline` command, run as a user runs it, against the local stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pika_pipeline.jobs.identity import job_id_for
from tests.support.pipeline import SAMPLE_IMAGE, Pipeline, eventbridge_body

CLI = Path(sys.executable).parent / "pika-pipeline"


def run(
    pipeline: Pipeline, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return cli("--local-stack", str(Path(pipeline.info.state_dir) / "stack.json"), *args, env=env)


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )


def _job_ids(output: str) -> list[str]:
    return [line.rsplit("job ", 1)[1] for line in output.splitlines() if " job " in line]


def test_upload_a_folder_and_a_file_wait_and_download(pipeline: Pipeline, tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    shutil.copy(SAMPLE_IMAGE, folder / "harbour-1.jpg")
    (folder / "notes.txt").write_text("not an image")
    quay = shutil.copy(SAMPLE_IMAGE, tmp_path / "quay.jpg")
    prompt = "Brume sur le port, lumière dorée — 港の霧"

    uploaded = run(
        pipeline,
        "upload",
        str(folder),
        str(quay),
        "--prompt",
        prompt,
        "--negative-prompt",
        "flou, texte",
        "--seed",
        "42",
        "--resolution",
        "1080p",
        "--duration",
        "1",
    )
    assert uploaded.returncode == 0, uploaded.stderr
    jobs = _job_ids(uploaded.stdout)
    assert len(jobs) == 2
    # a folder's images keep the folder's name in their keys; a file given alone, its own name
    assert f"uploads/{folder.name}/harbour-1.jpg" in uploaded.stdout
    assert "uploads/quay.jpg" in uploaded.stdout
    # The progress bar's last state: every image sent.
    assert "2/2 images" in uploaded.stdout

    waited = run(pipeline, "wait", jobs[0])
    assert waited.returncode == 0, waited.stderr
    assert "COMPLETED" in waited.stdout
    assert "video: s3://" in waited.stdout

    downloaded = run(pipeline, "download", jobs[0], str(tmp_path / "out"))
    assert downloaded.returncode == 0, downloaded.stderr
    video = Path(downloaded.stdout.strip())
    assert video.read_bytes()[4:8] == b"ftyp"
    job = pipeline.job(jobs[0])
    assert job is not None
    assert job["prompt"] == prompt
    assert (job["negative_prompt"], job["seed"], job["resolution"]) == ("flou, texte", 42, "1080p")
    assert pipeline.wait_for_job(jobs[1])["prompt"] == prompt

    into_a_file = run(pipeline, "download", jobs[0], str(video))
    assert into_a_file.returncode == 1
    assert into_a_file.stderr == f"error: {video} is a file, not a folder to download into\n"


def test_status_by_key_and_the_jobs_table(pipeline: Pipeline) -> None:
    before = datetime.now(UTC) - timedelta(minutes=1)
    uploaded = run(pipeline, "upload", str(SAMPLE_IMAGE), "--prompt", "status", "--duration", "1")
    (job_id,) = _job_ids(uploaded.stdout)
    pipeline.wait_for_job(job_id)
    after = datetime.now(UTC) + timedelta(minutes=1)

    status = run(pipeline, "status", f"uploads/{SAMPLE_IMAGE.name}", "--json")
    by_id = run(pipeline, "status", job_id, "--json")
    by_short_id = run(pipeline, "status", job_id[:8], "--json")  # as git takes a short id
    unknown_short_id = run(pipeline, "status", "0123456789abcdef")
    listed = run(pipeline, "jobs", "--status", "COMPLETED", "--since", "1h")
    # The same moments written as a user in Paris in summer, or in New York, would write them.
    since_before = before.astimezone(timezone(timedelta(hours=2))).isoformat(timespec="seconds")
    since_after = after.astimezone(timezone(timedelta(hours=-5))).isoformat(timespec="seconds")
    listed_since_before = run(pipeline, "jobs", "--since", since_before)
    listed_since_after = run(pipeline, "jobs", "--since", since_after)
    refused = run(pipeline, "retry", job_id, "--yes")

    assert json.loads(status.stdout)["job_id"] == job_id
    assert by_id.returncode == 0, by_id.stderr
    record = json.loads(by_id.stdout)
    assert (record["job_id"], record["status"], record["prompt"]) == (job_id, "COMPLETED", "status")
    assert json.loads(by_short_id.stdout)["job_id"] == job_id
    assert unknown_short_id.returncode == 1
    assert unknown_short_id.stderr.endswith(
        "error: no job id starts with '0123456789abcdef', and no object has that key\n"
    )
    # The whole id, the one status, download and cancel take.
    assert f"{job_id}  COMPLETED" in listed.stdout
    assert job_id in listed_since_before.stdout
    assert job_id not in listed_since_after.stdout
    assert refused.returncode == 1
    assert refused.stderr == (
        f"error: job {job_id} is COMPLETED; only FAILED or EXPIRED jobs can be retried\n"
    )


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


def test_an_expired_job_can_be_retried(pipeline: Pipeline) -> None:
    pipeline.fal_faults(processing_seconds=30)
    uploaded = run(pipeline, "upload", str(SAMPLE_IMAGE), "--prompt", "stuck", "--duration", "1")
    (job_id,) = _job_ids(uploaded.stdout)
    try:
        pipeline.wait_for_status(job_id, "SUBMITTED")
    finally:
        pipeline.fal_faults(processing_seconds=0)
    time.sleep(9)  # past the test stack's 8 s deadline
    pipeline.reconcile_until_final(job_id)

    waited = run(pipeline, "wait", job_id)
    retried = run(pipeline, "retry", job_id, "--yes")

    assert waited.returncode == 1
    assert "fal_deadline" in waited.stderr
    assert retried.returncode == 0, retried.stderr
    new_job = retried.stdout.strip().rsplit(" ", 1)[1]
    assert pipeline.wait_for_job(new_job)["status"] == "COMPLETED"
    assert pipeline.job(job_id)["status"] == "EXPIRED"  # type: ignore[index]


def test_upload_into_another_bucket(pipeline: Pipeline) -> None:
    bucket = pipeline.own_bucket()
    key = f"inbox/{SAMPLE_IMAGE.name}"

    uploaded = run(
        pipeline,
        "upload",
        str(SAMPLE_IMAGE),
        "--bucket",
        bucket,
        "--prefix",
        "inbox/",
        "--prompt",
        "elsewhere",
    )

    assert uploaded.returncode == 0, uploaded.stderr
    assert f"s3://{bucket}/{key}" in uploaded.stdout
    head = pipeline.s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["prompt"] == "elsewhere"
    assert _job_ids(uploaded.stdout) == [
        job_id_for(bucket=bucket, key=key, version=head["VersionId"])
    ]
    assert (
        pipeline.s3.list_objects_v2(Bucket=pipeline.input_bucket, Prefix="inbox/")["KeyCount"] == 0
    )


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


def test_an_image_that_cannot_be_read_is_one_clear_line(pipeline: Pipeline, tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "harbour.jpg").symlink_to(tmp_path / "moved-away.jpg")

    result = run(pipeline, "upload", str(folder), "--prompt", "x")

    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot use {folder / 'harbour.jpg'}: No such file or directory\n"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"outputs": {', "not JSON"),
        ('{"outputs": {}}', "it has no 'environment'"),
        ("[]", "not a JSON object"),
    ],
)
def test_a_damaged_stack_file_is_one_clear_line(tmp_path: Path, content: str, problem: str) -> None:
    stack_file = tmp_path / "stack.json"
    stack_file.write_text(content)

    result = cli("--local-stack", str(stack_file), "jobs")

    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {stack_file} is not a local stack's stack.json")
    assert problem in result.stderr
    assert len(result.stderr.splitlines()) == 1


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


def _stack_file_with(pipeline: Pipeline, path: Path, **outputs: str | None) -> Path:
    """A copy of the local stack's stack.json with some outputs changed (None: removed)."""
    info = json.loads((Path(pipeline.info.state_dir) / "stack.json").read_text())
    for name, value in outputs.items():
        if value is None:
            del info["outputs"][name]
        else:
            info["outputs"][name] = value
    path.write_text(json.dumps(info))
    return path


def test_upload_goes_under_the_input_prefix_the_stack_watches(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    prefix = f"incoming/{uuid.uuid4().hex[:8]}/"
    stack_file = _stack_file_with(pipeline, tmp_path / "stack.json", InputPrefix=prefix)
    key = f"{prefix}{SAMPLE_IMAGE.name}"

    uploaded = cli("--local-stack", str(stack_file), "upload", str(SAMPLE_IMAGE), "--prompt", "x")

    assert uploaded.returncode == 0, uploaded.stderr
    assert f"s3://{pipeline.input_bucket}/{key}" in uploaded.stdout
    head = pipeline.s3.head_object(Bucket=pipeline.input_bucket, Key=key)
    assert _job_ids(uploaded.stdout) == [
        job_id_for(bucket=pipeline.input_bucket, key=key, version=head["VersionId"])
    ]


def test_a_stack_without_an_input_prefix_output_asks_for_prefix(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    stack_file = _stack_file_with(pipeline, tmp_path / "stack.json", InputPrefix=None)

    refused = cli("--local-stack", str(stack_file), "upload", str(SAMPLE_IMAGE), "--prompt", "x")

    assert refused.returncode == 1
    assert refused.stderr.startswith("error: the stack has no InputPrefix output")
    assert "--prefix" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1


def test_a_local_stack_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-stack" / "stack.json"

    for result in (
        cli("--local-stack", str(missing), "jobs"),
        cli("jobs", env={**os.environ, "PIKA_LOCAL_STACK": str(missing)}),
    ):
        assert result.returncode == 1
        assert result.stderr == (
            f"error: {missing} does not exist; is the local stack running (`make stack`)?\n"
        )


def test_upload_into_another_bucket_without_a_prefix_goes_under_uploads(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    bucket = pipeline.own_bucket()
    stack_file = _stack_file_with(pipeline, tmp_path / "stack.json", InputPrefix="incoming/")

    uploaded = cli(
        "--local-stack",
        str(stack_file),
        "upload",
        str(SAMPLE_IMAGE),
        "--bucket",
        bucket,
        "--prompt",
        "x",
    )

    assert uploaded.returncode == 0, uploaded.stderr
    assert f"s3://{bucket}/uploads/{SAMPLE_IMAGE.name}" in uploaded.stdout
    assert pipeline.s3.head_object(Bucket=bucket, Key=f"uploads/{SAMPLE_IMAGE.name}")


def test_without_a_stack_the_local_stack_of_this_folder_is_used_and_named_first(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    (tmp_path / ".local-stack").mkdir()
    _stack_file_with(pipeline, tmp_path / ".local-stack" / "stack.json")
    env = {k: v for k, v in os.environ.items() if k != "PIKA_LOCAL_STACK"}

    result = cli("jobs", "--limit", "1", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    # A folder's stack.json says where AWS is: the user is told which one answered.
    assert result.stderr.splitlines()[0] == (
        "using the local stack in .local-stack/stack.json (no --stack given)"
    )


def test_with_a_stack_named_the_local_stack_of_this_folder_is_never_read(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    (tmp_path / ".local-stack").mkdir()
    (tmp_path / ".local-stack" / "stack.json").write_text("not a stack file")
    env = {**os.environ, **pipeline.info.environment}

    result = cli("--stack", "no-such-stack", "jobs", env=env, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr == "error: no stack named 'no-such-stack' in this account and region\n"
