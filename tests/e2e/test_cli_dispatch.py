"""The operator's side of the dispatch gate through `pika-pipeline`: queue, pause, resume, cancel,
bulk upload and a readable status, against a local stack of its own (pausing it must not stall the
session's other tests) with fal's capacity at 2 + 1 like a new fal account.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from local.stack import LocalStack
from pika_pipeline.dispatch.control import PAUSE_CACHE_SECONDS
from pika_pipeline.jobs.identity import job_id_for
from tests.e2e.test_cli import _job_ids, cli
from tests.support.pipeline import SAMPLE_IMAGE, Pipeline, eventually

CAPACITY = {"FalConcurrency": "2", "FalQueueHeadroom": "1"}


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, Path]]:
    """A pipeline with fal's capacity at 2 + 1, and the stack.json the CLI is given."""
    state_dir = tmp_path_factory.mktemp("gated-stack")
    parameters = {
        **CAPACITY,
        "SubmitRetryBaseSeconds": "1",
        "FalTimeoutSeconds": "2",
        "ReconcileAfterSeconds": "1",
        "JobDeadlineSeconds": "30",
    }
    with LocalStack(state_dir, parameters=parameters, run_schedules=False) as info:
        # The emulator runs FalConcurrency (2) requests at once, like a new fal account.
        yield Pipeline(info), state_dir / "stack.json"


def run(gated: tuple[Pipeline, Path], *args: str, **env: str) -> CompletedProcess[str]:
    _, stack_file = gated
    return cli("--local-stack", str(stack_file), *args, env={**os.environ, **env} if env else None)


def _pause(gated: tuple[Pipeline, Path]) -> None:
    """`pause`, then as long as a function may still trust the switch it read before (the
    functions cache it briefly): from then on nothing is dispatched."""
    paused = run(gated, "pause")
    assert paused.returncode == 0, paused.stderr
    time.sleep(PAUSE_CACHE_SECONDS + 0.5)


def _control_table(gated: tuple[Pipeline, Path]) -> str:
    return str(json.loads(gated[1].read_text())["outputs"]["ControlTableName"])


def _control_item(gated: tuple[Pipeline, Path], pk: str) -> dict[str, Any]:
    ddb = gated[0].table.meta.client
    key: dict[str, Any] = {"pk": pk}  # a resource's client: plain values, (de)serialised for us
    return dict(
        ddb.get_item(TableName=_control_table(gated), Key=key, ConsistentRead=True).get("Item", {})
    )


def _hold_slot(gated: tuple[Pipeline, Path], slot: int, job_id: str) -> None:
    item: dict[str, Any] = {
        "pk": f"slot#{slot}",
        "holder": job_id,
        "taken_at": datetime.now(UTC).isoformat(),
    }
    gated[0].table.meta.client.put_item(TableName=_control_table(gated), Item=item)


def _events_by_job(pipeline: Pipeline, queue_url: str, jobs: list[str]) -> dict[str, list[Any]]:
    """The completion events that reached a subscribed queue, by job (read once: a message read
    for another job stays invisible for a while)."""
    found: dict[str, list[Any]] = {job_id: [] for job_id in jobs}

    def all_seen() -> bool | None:
        for message in pipeline.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            event = json.loads(message["Body"])
            found.setdefault(event["detail"]["job_id"], []).append(event)
        return all(found[job_id] for job_id in jobs) or None

    eventually(all_seen)
    return found


def _waiting_job(
    pipeline: Pipeline, *, lane: str, batch: str, rank: int, queued_at: datetime
) -> str:
    """A QUEUED job as the submit path records one (the gate's attributes, design doc)."""
    job_id = uuid.uuid4().hex
    at = queued_at.isoformat(timespec="milliseconds")
    pipeline.table.put_item(
        Item={
            "job_id": job_id,
            "status": "QUEUED",
            "priority": lane,
            "batch": batch,
            "queued_at": at,
            "created_at": at,
            "updated_at": at,
            "source_bucket": pipeline.input_bucket,
            "source_key": f"uploads/{batch}/{job_id[:6]}.jpg",
            "prompt": "hand-made",
            "queue_lane": lane,
            "queue_order": f"{rank:012d}#{at}#{job_id}",
        }
    )
    return job_id


# --- always: the CLI's own work -----------------------------------------------------------------


def test_upload_a_folder_as_a_batch_with_a_priority_shows_progress(
    gated: tuple[Pipeline, Path], tmp_path: Path
) -> None:
    pipeline, _ = gated
    folder = tmp_path / "catalog"
    for sub in ("shoes", "hats"):  # the same names in two subfolders: five uploads each
        (folder / sub).mkdir(parents=True)
        for n in range(5):
            shutil.copy(SAMPLE_IMAGE, folder / sub / f"item-{n}.jpg")
    prefix = f"uploads/{uuid.uuid4().hex[:6]}/"

    uploaded = run(
        gated,
        "upload",
        str(folder),
        "--prefix",
        prefix,
        "--prompt",
        "x",
        "--batch",
        "spring",
        "--priority",
        "high",
        "--duration",
        "1",
    )

    assert uploaded.returncode == 0, uploaded.stderr
    assert "10/10 images" in uploaded.stdout  # the progress bar's last state
    jobs = _job_ids(uploaded.stdout)
    assert len(set(jobs)) == 10
    for key in (
        f"{prefix}catalog/{sub}/item-{n}.jpg" for sub in ("shoes", "hats") for n in range(5)
    ):
        head = pipeline.s3.head_object(Bucket=pipeline.input_bucket, Key=key)
        assert (head["Metadata"]["batch"], head["Metadata"]["priority"]) == ("spring", "high")
        # The job id printed is the upload's, version included (the transfer manager's answer).
        line = next(line for line in uploaded.stdout.splitlines() if key in line)
        version = head["VersionId"]
        expected = job_id_for(bucket=pipeline.input_bucket, key=key, version=version)
        assert line.rsplit("job ", 1)[1] == expected


def test_status_is_readable_by_a_person_and_raw_with_json(gated: tuple[Pipeline, Path]) -> None:
    pipeline, _ = gated
    job_id = pipeline.upload({"prompt": "=?utf-8?q?cam=C3=A9ra_lente?=", "duration": "1"})
    job = eventually(lambda: pipeline.job(job_id))

    readable = run(gated, "status", job_id, TZ="Asia/Tokyo")
    raw = run(gated, "status", job_id, "--json")

    assert readable.returncode == 0, readable.stderr
    assert "caméra lente" in readable.stdout
    assert "\\u00e9" not in readable.stdout
    created = datetime.fromisoformat(str(job["created_at"])).astimezone(ZoneInfo("Asia/Tokyo"))
    assert created.strftime("%Y-%m-%d %H:%M:%S JST") in readable.stdout
    assert json.loads(raw.stdout)["job_id"] == job_id


def test_pause_and_resume_set_the_dispatch_item(gated: tuple[Pipeline, Path]) -> None:
    paused = run(gated, "pause")
    item = _control_item(gated, "dispatch")
    queue = json.loads(run(gated, "queue", "--json").stdout)
    resumed = run(gated, "resume")

    assert paused.returncode == 0, paused.stderr
    assert item["paused"] is True
    assert "paused_at" in item
    assert "paused_by" in item
    assert (queue["paused"], queue["paused_by"]) == (True, item["paused_by"])
    assert resumed.returncode == 0, resumed.stderr
    assert _control_item(gated, "dispatch")["paused"] is False


def test_queue_shows_waiting_jobs_by_priority_and_batch_and_requests_at_fal(
    gated: tuple[Pipeline, Path],
) -> None:
    pipeline, _ = gated
    _pause(gated)  # the dispatcher leaves these hand-made records alone
    try:
        start = datetime.now(UTC) - timedelta(minutes=30)
        made = [
            _waiting_job(pipeline, lane="normal", batch="shop", rank=n, queued_at=start)
            for n in range(3)
        ]
        made.append(_waiting_job(pipeline, lane="high", batch="", rank=1, queued_at=start))
        at_fal = uuid.uuid4().hex
        pipeline.table.put_item(Item={"job_id": at_fal, "status": "SUBMITTED", "slot": 0})
        done = uuid.uuid4().hex
        pipeline.table.put_item(Item={"job_id": done, "status": "COMPLETED"})
        _hold_slot(gated, 0, at_fal)
        _hold_slot(gated, 1, done)

        numbers = json.loads(run(gated, "queue", "--json").stdout)
        shown = run(gated, "queue")
    finally:
        run(gated, "cancel", "--all-queued", "--yes")
        pipeline.table.update_item(
            Key={"job_id": at_fal},
            UpdateExpression="SET #s = :c",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":c": "COMPLETED"},
        )
        run(gated, "resume")

    assert numbers["waiting"] >= 4
    rows = {(r["priority"], r["batch"]): r["waiting"] for r in numbers["by_batch"]}
    assert (rows[("normal", "shop")], rows[("high", "")]) == (3, 1)
    assert (numbers["in_flight"], numbers["capacity"]) == (1, 3)
    assert numbers["paused"] is True
    assert shown.returncode == 0, shown.stderr
    assert "PAUSED" in shown.stdout
    assert "1 of 3 requests" in shown.stdout
    assert "not while paused" in shown.stdout
    lines = shown.stdout.splitlines()
    high = next(i for i, line in enumerate(lines) if line.startswith("high"))
    shop = next(i for i, line in enumerate(lines) if line.startswith("normal") and "shop" in line)
    assert high < shop  # in dispatch order


def test_cancel_waiting_jobs_publishes_video_failed_cancelled(
    gated: tuple[Pipeline, Path],
) -> None:
    pipeline, _ = gated
    events = pipeline.subscribe()
    _pause(gated)
    try:
        now = datetime.now(UTC)
        wrong = [
            _waiting_job(pipeline, lane="normal", batch="wrong-prompt", rank=n, queued_at=now)
            for n in range(2)
        ]
        other = _waiting_job(pipeline, lane="low", batch="keep", rank=1, queued_at=now)

        unconfirmed = run(gated, "cancel", "--batch", "wrong-prompt")
        by_batch = run(gated, "cancel", "--batch", "wrong-prompt", "--yes")
        kept = pipeline.job(other)
        by_id = run(gated, "cancel", other)
        again = run(gated, "cancel", other)
    finally:
        run(gated, "resume")

    assert unconfirmed.returncode == 1
    assert "confirm with --yes" in unconfirmed.stderr
    assert by_batch.returncode == 0, by_batch.stderr
    assert "cancelled 2 waiting job(s) of batch 'wrong-prompt'" in by_batch.stdout
    assert kept is not None
    assert kept["status"] == "QUEUED"
    assert by_id.returncode == 0, by_id.stderr
    assert again.returncode == 1
    assert "is CANCELLED; there is nothing to cancel" in again.stderr
    events_by_job = _events_by_job(pipeline, events, [*wrong, other])
    for job_id in [*wrong, other]:
        job = pipeline.job(job_id)
        assert job is not None
        assert (job["status"], job["error_code"]) == ("CANCELLED", "cancelled")
        assert "queue_lane" not in job
        (event,) = events_by_job[job_id]
        assert event["detail-type"] == "Video Failed"
        assert event["detail"]["error"]["code"] == "cancelled"
        assert pipeline.fal_submits_for(job_id) == []  # nothing paid


# --- what a user of the pipeline sees -------------------------------------------------------------


def test_pause_stops_dispatch_and_resume_starts_it(gated: tuple[Pipeline, Path]) -> None:
    pipeline, _ = gated
    _pause(gated)
    try:
        jobs = [pipeline.upload({"prompt": "paused", "duration": "1"}) for _ in range(2)]
        for job_id in jobs:
            pipeline.wait_for_status(job_id, "QUEUED")
        pipeline.reconcile()  # every dispatcher has now had its chance, and declined

        assert [pipeline.fal_submits_for(job_id) for job_id in jobs] == [[], []]
        shown = json.loads(run(gated, "queue", "--json").stdout)
        assert shown["paused"] is True
        assert shown["waiting"] >= 2
    finally:
        resumed = run(gated, "resume")

    assert resumed.returncode == 0, resumed.stderr
    for job_id in jobs:
        assert pipeline.wait_for_job(job_id)["status"] == "COMPLETED"
        assert len(pipeline.fal_submits_for(job_id)) == 1


def test_cancelled_uploads_never_reach_fal(gated: tuple[Pipeline, Path]) -> None:
    pipeline, _ = gated
    events = pipeline.subscribe()
    _pause(gated)
    try:
        jobs = [pipeline.upload({"prompt": "never", "duration": "1"}) for _ in range(3)]
        for job_id in jobs:
            pipeline.wait_for_status(job_id, "QUEUED")
        pipeline.reconcile()  # each run writes the waiting jobs' positions
        status = run(gated, "status", jobs[2])
        one = run(gated, "cancel", jobs[0])
        rest = run(gated, "cancel", "--all-queued", "--yes")
    finally:
        run(gated, "resume")
    pipeline.reconcile()  # dispatch has run since the resume: nothing was left to send

    assert "Position" in status.stdout
    assert (one.returncode, rest.returncode) == (0, 0), (one.stderr, rest.stderr)
    events_by_job = _events_by_job(pipeline, events, jobs)
    for job_id in jobs:
        assert pipeline.wait_for_job(job_id)["status"] == "CANCELLED"
        assert pipeline.fal_submits_for(job_id) == []
        (event,) = events_by_job[job_id]
        assert event["detail"]["error"]["code"] == "cancelled"


def test_cancel_of_a_job_at_fal_cancels_its_request(gated: tuple[Pipeline, Path]) -> None:
    pipeline, _ = gated
    events = pipeline.subscribe()
    pipeline.fal_account(concurrency=0)  # fal accepts the request and keeps it in its queue
    try:
        job_id = pipeline.upload({"prompt": "stop it", "duration": "1"})
        pipeline.wait_for_status(job_id, "SUBMITTED")

        cancelled = run(gated, "cancel", job_id)

        job = pipeline.wait_for_status(job_id, "CANCELLED")
    finally:
        pipeline.fal_account(concurrency=2)

    assert cancelled.returncode == 0, cancelled.stderr
    assert "is at fal; the reconciler is cancelling its request now" in cancelled.stdout
    assert job["error_code"] == "cancelled"
    (request,) = pipeline.fal_requests_for(job_id)
    assert request["cancelled"] is True
    assert request["request_id"] == job["request_id"]
    (event,) = _events_by_job(pipeline, events, [job_id])[job_id]
    assert event["detail-type"] == "Video Failed"
    assert event["detail"]["error"]["code"] == "cancelled"
