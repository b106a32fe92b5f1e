"""The local Lambda runtime gives each concurrent invocation a process of its own, as Lambda
gives each an execution environment: a handler never runs two invocations at once."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from local.lambda_runtime.pool import WorkerPool
from local.template import REPO_ROOT

HANDLER = """
import os, time

running = 0

def handler(event, context):
    global running
    running += 1
    try:
        time.sleep(event.get("sleep", 0))
        if event.get("exit"):
            os._exit(1)
        if event.get("fail"):
            raise ValueError("asked to fail")
        return {"pid": os.getpid(), "running": running}
    finally:
        running -= 1
"""


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerPool]:
    (tmp_path / "probe_app.py").write_text(HANDLER)
    spec = {"handler": "probe_app.handler", "function_name": "probe", "memory": 128, "timeout": 5}
    stack_file = tmp_path / "stack.json"
    stack_file.write_text(json.dumps({"functions": {"Probe": spec}}))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(REPO_ROOT)]))
    workers = WorkerPool(stack_file, "Probe", concurrency=2)
    workers.start().wait_until_ready()
    yield workers
    workers.close()


def test_invocations_one_after_another_reuse_the_warm_process(pool: WorkerPool) -> None:
    pids = {pool.invoke({}).result["pid"] for _ in range(3)}

    assert len(pids) == 1


def test_overlapping_invocations_run_in_processes_of_their_own_up_to_the_concurrency(
    pool: WorkerPool,
) -> None:
    with ThreadPoolExecutor(max_workers=4) as threads:
        results = list(threads.map(lambda _: pool.invoke({"sleep": 0.5}).result, range(4)))

    assert {result["running"] for result in results} == {1}  # never two at once in a process
    assert len({result["pid"] for result in results}) == 2  # the concurrency: 2 environments


def test_a_failing_invocation_is_reported_and_the_process_serves_the_next(
    pool: WorkerPool,
) -> None:
    failed = pool.invoke({"fail": True})
    after = pool.invoke({})

    assert failed.error == {"errorMessage": "asked to fail", "errorType": "ValueError"}
    assert after.error is None


def test_a_process_that_dies_mid_invocation_is_replaced_by_a_cold_one(pool: WorkerPool) -> None:
    before = pool.invoke({}).result["pid"]

    died = pool.invoke({"exit": True})
    after = pool.invoke({})

    assert died.error is not None
    assert died.error["errorType"] == "Runtime.ExitError"
    assert after.error is None
    assert after.result["pid"] != before
