"""Bulk drops that fal can run: the pipeline keeps the backlog and sends fal only what the
account can run (FalConcurrency + FalQueueHeadroom), in priority and fair-share order.

These tests run their own stack, with a new fal account's limit (2) on both sides and a short
deadline, so that a drop several times the capacity would expire if it all went to fal at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from local.stack import LocalStack
from pika_pipeline.dispatch.control import PAUSE_CACHE_SECONDS
from pika_pipeline.jobs.events import SOURCE
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES
from tests.support.pipeline import Pipeline, eventbridge_body, eventually

pytestmark = pytest.mark.stack

FAL_CONCURRENCY = 2
HEADROOM = 1
CAPACITY = FAL_CONCURRENCY + HEADROOM
DEADLINE_SECONDS = 15
# What `pika-pipeline resume` sends: not an upload, a request to fill free slots.
DISPATCH_NUDGE = {"source": SOURCE, "detail-type": "Dispatch Requested", "detail": {}}


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Pipeline]]:
    state_dir: Path = tmp_path_factory.mktemp("dispatch-stack")
    parameters = {
        "SubmitRetryBaseSeconds": "1",
        "FalTimeoutSeconds": "2",
        "ReconcileAfterSeconds": "5",
        "JobDeadlineSeconds": str(DEADLINE_SECONDS),
        "ReconcileBatchSize": "100",
        "FalConcurrency": str(FAL_CONCURRENCY),
        "FalQueueHeadroom": str(HEADROOM),
        # A crashed dispatch is taken over quickly (the function timeout does not matter here).
        "SubmitClaimSeconds": "4",
    }
    stack = LocalStack(state_dir, parameters=parameters, run_schedules=False)
    with stack as info:
        yield stack, Pipeline(info)


@pytest.fixture
def pipeline(gated: tuple[LocalStack, Pipeline]) -> Pipeline:
    return gated[1]


class Reconciling:
    """The reconciler on a short schedule (every 3 s), as the safety net runs in a deployment."""

    def __init__(self, pipeline: Pipeline, every: float = 3.0) -> None:
        self._pipeline = pipeline
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Reconciling:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._pipeline.reconcile()


def _upload_all(pipeline: Pipeline, keys: list[str], **metadata: str) -> list[str]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(
            pool.map(
                lambda key: pipeline.upload({"prompt": "a slow pan", **metadata}, key=key), keys
            )
        )


def _wait_all_final(pipeline: Pipeline, job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    jobs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        jobs = [pipeline.job(job_id) or {"job_id": job_id, "status": "-"} for job_id in job_ids]
        if all(job["status"] in TERMINAL_STATUSES for job in jobs):
            return jobs
        time.sleep(0.5)
    open_ = [
        (job["job_id"], job["status"]) for job in jobs if job["status"] not in TERMINAL_STATUSES
    ]
    raise AssertionError(f"{len(open_)} jobs still open after {timeout} s: {open_[:5]}")


def _statuses(jobs: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        key = f"{job['status']} {job.get('error_code', '')}".strip()
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_a_drop_many_times_the_fal_capacity_all_completes_without_overrunning_fal(
    pipeline: Pipeline,
) -> None:
    # given: a new fal account (2 at a time) that takes about half a second per video. fast: the
    # emulator's cheap render, so the time at fal is the 0.5 s, not the machine's load. The same
    # setup before the gate: 4 of 60 FAILED by fal's start timeout, 54 outstanding at fal at once.
    pipeline.fal_reset()
    pipeline.fal_account(concurrency=FAL_CONCURRENCY)
    pipeline.fal_faults(processing_seconds=0.5, fast=True)
    keys = [f"uploads/catalog/item-{n:03}.jpg" for n in range(60)]

    # when: a product team drops 60 images at once
    with Reconciling(pipeline):
        job_ids = _upload_all(pipeline, keys)
        jobs = _wait_all_final(pipeline, job_ids, timeout=240)

    # then: every one became a video, and fal never had more than it can run plus headroom
    assert _statuses(jobs) == {"COMPLETED": 60}
    assert pipeline.fal_emulator_state()["peak_outstanding"] <= CAPACITY
    assert all(len(pipeline.fal_submits_for(job_id)) == 1 for job_id in job_ids)


# --- order: priorities and fair share -----------------------------------------------------------


class FalHeld:
    """fal keeps what it is sent in its queue (an account running nothing): the first CAPACITY
    uploads take every slot and the rest wait in the pipeline, until the account runs again."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def __enter__(self) -> FalHeld:
        self._pipeline.fal_reset()
        self._pipeline.fal_account(concurrency=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._pipeline.fal_account(concurrency=FAL_CONCURRENCY)


def _waiting_behind_full_slots(pipeline: Pipeline, job_ids: list[str]) -> list[str]:
    """Once CAPACITY of the jobs are at fal and the rest wait: the waiting ones."""

    def settled() -> list[str] | None:
        jobs = [pipeline.job(job_id) or {} for job_id in job_ids]
        at_fal = [j for j in jobs if j.get("status") == "SUBMITTED"]
        waiting = [str(j["job_id"]) for j in jobs if j.get("status") == "QUEUED"]
        return waiting if len(at_fal) == CAPACITY and len(waiting) + CAPACITY == len(jobs) else None

    return eventually(settled)


def _dispatch_order(jobs: list[dict[str, Any]]) -> list[str]:
    return [str(job["job_id"]) for job in sorted(jobs, key=lambda job: job["dispatched_at"])]


def test_a_high_priority_upload_made_while_a_batch_waits_is_dispatched_next(
    pipeline: Pipeline,
) -> None:
    batch = f"uploads/spring-{time.monotonic_ns()}"
    with FalHeld(pipeline), Reconciling(pipeline):
        bulk = _upload_all(
            pipeline, [f"{batch}/{n}.jpg" for n in range(CAPACITY + 4)], duration="1"
        )
        waiting = _waiting_behind_full_slots(pipeline, bulk)
        urgent = pipeline.upload(
            {"prompt": "the hero shot", "duration": "1", "priority": "high"},
            key=f"{batch}/hero.jpg",
        )
        pipeline.wait_for_status(urgent, "QUEUED")
    jobs = _wait_all_final(pipeline, [*bulk, urgent], timeout=90)

    assert _statuses(jobs) == {"COMPLETED": len(bulk) + 1}
    after_it = _dispatch_order([job for job in jobs if job["job_id"] in {*waiting, urgent}])
    # Next: in the first fill after fal ran again, ahead of the batch's queue (FIFO would put it
    # last). That fill pairs it with the first free slot, but sends its pairs side by side, and
    # fal's first runners end together: a batch job taking another slot freed with that one
    # may be stamped a moment earlier.
    assert after_it.index(urgent) < FAL_CONCURRENCY, after_it
    assert pipeline.job(urgent)["priority"] == "high"  # type: ignore[index]


def test_a_single_upload_in_another_folder_is_dispatched_within_the_fairness_bound(
    pipeline: Pipeline,
) -> None:
    run = time.monotonic_ns()
    with FalHeld(pipeline), Reconciling(pipeline):
        bulk = _upload_all(
            pipeline, [f"uploads/shop-{run}/{n}.jpg" for n in range(12)], duration="1"
        )
        waiting = _waiting_behind_full_slots(pipeline, bulk)
        single = pipeline.upload(
            {"prompt": "my portrait", "duration": "1"}, key=f"uploads/alice-{run}/portrait.jpg"
        )
        pipeline.wait_for_status(single, "QUEUED")
    jobs = _wait_all_final(pipeline, [*bulk, single], timeout=90)

    assert _statuses(jobs) == {"COMPLETED": len(bulk) + 1}
    order = _dispatch_order([job for job in jobs if job["job_id"] in {*waiting, single}])
    # It starts after at most about FalConcurrency more batch jobs, not after the whole batch.
    assert order.index(single) <= FAL_CONCURRENCY, order
    assert pipeline.job(single)["batch"] == f"alice-{run}"  # type: ignore[index]


# --- exactly once, and nothing paid for what cannot run --------------------------------------


def test_a_duplicate_event_for_a_waiting_job_does_nothing(pipeline: Pipeline) -> None:
    run = time.monotonic_ns()
    with FalHeld(pipeline), Reconciling(pipeline):
        uploads = _upload_all(
            pipeline, [f"uploads/dup-{run}/{n}.jpg" for n in range(CAPACITY + 1)], duration="1"
        )
        (waiting_id,) = _waiting_behind_full_slots(pipeline, uploads)  # whichever came last
        waiting = pipeline.job(waiting_id)
        assert waiting is not None

        # S3 and EventBridge deliver at least once: the same object version arrives again.
        body = eventbridge_body(
            waiting["source_bucket"], waiting["source_key"], waiting["source_version"]
        )
        mark = pipeline.log_mark("SubmitFunction")
        pipeline.send_raw_message(body)
        pipeline.send_raw_message(body)
        pipeline.wait_for_duplicates(waiting_id, since=mark, count=2)
        again = pipeline.job(waiting_id)
    (done,) = _wait_all_final(pipeline, [waiting_id], timeout=60)

    assert again is not None
    assert again["status"] == "QUEUED"
    assert (again["queue_order"], again["queued_at"]) == (
        waiting["queue_order"],
        waiting["queued_at"],
    )
    assert done["status"] == "COMPLETED"
    assert len(pipeline.fal_submits_for(waiting_id)) == 1


def test_an_unknown_priority_is_rejected_before_anything_is_paid(pipeline: Pipeline) -> None:
    job_id = pipeline.upload({"prompt": "now!", "duration": "1", "priority": "urgent"})

    job = pipeline.wait_for_job(job_id)

    assert (job["status"], job["error_code"]) == ("REJECTED", "invalid_priority")
    assert "urgent" in job["error_message"]
    assert pipeline.fal_submits_for(job_id) == []


# --- crash safety -------------------------------------------------------------------------------


def test_a_submit_function_killed_mid_dispatch_leaks_no_slot_and_submits_once(
    gated: tuple[LocalStack, Pipeline],
) -> None:
    stack, pipeline = gated
    pipeline.fal_reset()
    pipeline.fal_account(concurrency=FAL_CONCURRENCY)
    control = pipeline.info.outputs["ControlTableName"]
    ddb = pipeline.table.meta.client

    def set_paused(paused: bool) -> None:
        ddb.put_item(TableName=control, Item={"pk": "dispatch", "paused": paused})

    # given a job waiting while dispatch is paused, and the submit function idle
    set_paused(True)
    time.sleep(PAUSE_CACHE_SECONDS + 0.5)  # a running function trusts its last read this long
    job_id = pipeline.upload({"prompt": "killed mid-dispatch", "duration": "1"})
    pipeline.wait_for_status(job_id, "QUEUED")
    pipeline.wait_for_queue_drained()
    # The slot transaction is written at once but its answer is held: the function is caught
    # holding the slot and the claim, before fal is called, however slow the machine is.
    pipeline.aws_faults(
        service="dynamodb", operation="TransactWriteItems", times=1, reply_delay_seconds=45
    )

    # when dispatch resumes, and the function is SIGKILLed between the slot and fal
    set_paused(False)
    pipeline.send_raw_message(json.dumps(DISPATCH_NUDGE))
    claimed = pipeline.wait_for_status(job_id, "PENDING", timeout=60)
    stack.kill_and_restart("SubmitFunction")
    assert pipeline.fal_submits_for(job_id) == []  # killed before fal heard of it

    # then the reconciler takes the claim over once it runs out: one submit, one video
    with Reconciling(pipeline, every=1.0):
        (job,) = _wait_all_final(pipeline, [job_id], timeout=150)

    assert job["status"] == "COMPLETED"
    assert job["slot"] == claimed["slot"]  # it kept the slot it took
    assert len(pipeline.fal_submits_for(job_id)) == 1
    # No slot leaked: each one is free or held by an open job.
    for number in range(CAPACITY):
        item = ddb.get_item(TableName=control, Key={"pk": f"slot#{number}"}).get("Item", {})
        holder = pipeline.job(str(item["holder"])) if item.get("holder") else None
        assert holder is None or holder["status"] in TERMINAL_STATUSES


def test_a_dispatch_whose_fal_answer_was_lost_is_adopted_by_the_reconciler_not_submitted_twice(
    gated: tuple[LocalStack, Pipeline],
) -> None:
    _, pipeline = gated
    pipeline.fal_reset()
    pipeline.fal_account(concurrency=FAL_CONCURRENCY)
    # fal accepts the request but its answer comes after the submit's 2 s timeout, and its
    # webhook never comes: only fal's request history can tell the reconciler it exists.
    pipeline.fal_faults(submit_delay=[10], delivery=["drop"])

    # given a dispatch that lost fal's answer: the claim is released to the reconciler
    job_id = pipeline.upload({"prompt": "answer lost mid-dispatch", "duration": "1"})

    def released() -> dict[str, Any] | None:
        job = pipeline.job(job_id)
        return job if job and job.get("last_error") else None

    lost = eventually(released, timeout=60)
    assert (lost["status"], "request_id" in lost) == ("PENDING", False)
    (accepted,) = pipeline.fal_submits_for(job_id)

    # when the reconciler runs
    with Reconciling(pipeline, every=1.0):
        (job,) = _wait_all_final(pipeline, [job_id], timeout=90)

    # then fal ran one request, the one it had accepted, and the job has its one video
    assert len(pipeline.fal_submits_for(job_id)) == 1
    assert job["status"] == "COMPLETED"
    assert job["request_id"] == job["completed_request_id"] == accepted["request_id"]
    assert pipeline.video_objects(job_id) == [job["output_key"]]
