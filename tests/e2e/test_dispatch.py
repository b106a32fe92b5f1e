"""Bulk drops that fal can run: the pipeline keeps the backlog and sends fal only what the
account can run (FalConcurrency + FalQueueHeadroom), in priority and fair-share order.

These tests run their own stack, with a new fal account's limit (2) on both sides and a short
deadline, so that a drop several times the capacity would expire if it all went to fal at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from local.stack import LocalStack
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.stack

FAL_CONCURRENCY = 2
HEADROOM = 1
CAPACITY = FAL_CONCURRENCY + HEADROOM
DEADLINE_SECONDS = 15


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
    # given: a new fal account (2 at a time) that takes about half a second per video
    pipeline.fal_reset()
    pipeline.fal_faults(concurrency=FAL_CONCURRENCY, processing_seconds=0.5, fast=True)
    keys = [f"uploads/catalog/item-{n:03}.jpg" for n in range(60)]

    # when: a product team drops 60 images at once
    with Reconciling(pipeline):
        job_ids = _upload_all(pipeline, keys)
        jobs = _wait_all_final(pipeline, job_ids, timeout=150)

    # then: every one became a video, and fal never had more than it can run plus headroom
    assert _statuses(jobs) == {"COMPLETED": 60}
    assert pipeline.fal_emulator_state()["peak_outstanding"] <= CAPACITY
    assert all(len(pipeline.fal_submits_for(job_id)) == 1 for job_id in job_ids)
