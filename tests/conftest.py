"""Shared fixtures: the local stack, started once per test session, and clients a user would use."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.stack import LocalStack, StackInfo
from tests.support.pipeline import Pipeline


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the stack is marked ``stack``, so ``pytest -m "not stack"`` is the
    fast loop that starts none (tests that start a stack of their own carry the mark by hand)."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    state_dir: Path = tmp_path_factory.mktemp("local-stack")
    # Tests compress time: fal outages are retried after 1, 2, 4... seconds instead of 30, 60...,
    # and one HTTP attempt to fal times out after 2 s instead of 10.
    # Job records carry a TTL, as with JobRetentionDays set in a deployment. The reconciler only
    # runs when a test invokes it, looks at jobs after 1 s, and expires them after 8 s.
    parameters = {
        "SubmitRetryBaseSeconds": "1",
        "FalTimeoutSeconds": "2",
        "JobRetentionDays": "30",
        "ReconcileAfterSeconds": "1",
        "JobDeadlineSeconds": "8",
        "ReconcileBatchSize": "3",
        # fal capacity is not what these tests are about, and many leave jobs open on purpose:
        # a gate as wide as the largest fal account keeps them from waiting on each other (the
        # gate itself is tested on a stack of its own, tests/e2e/test_dispatch.py).
        "FalConcurrency": "40",
        # Tests receive webhooks on loopback servers of their own, named per upload
        # (callback-url); failed deliveries are retried after 1 s, 4 attempts in all.
        "CallbackHosts": "127.0.0.1",
        "NotifyRetryDelays": "1",
        "NotifyMaxAttempts": "4",
        # A job's event the notifier has not taken 5 s after the job ended is published again
        # by the next reconciler run (the notifier normally takes it within a second).
        "EventGraceSeconds": "5",
    }
    with LocalStack(state_dir, parameters=parameters, run_schedules=False) as info:
        yield info


@pytest.fixture(scope="session")
def pipeline(stack: StackInfo) -> Pipeline:
    return Pipeline(stack)


@pytest.fixture(autouse=True)
def _no_faults_left_over(request: pytest.FixtureRequest) -> None:
    """Fault knobs are queues the next submission of any test consumes: each test that uses the
    stack starts with none armed, in fal's emulator or in front of AWS. Tests without the stack
    do not start it for this."""
    if "stack" not in request.fixturenames:
        return
    info: StackInfo = request.getfixturevalue("stack")
    tls = ssl.create_default_context(cafile=info.fal_ca_file)
    _post(f"{info.fal_url}/_emulator/faults/reset", tls)
    _post(f"{info.aws_fault_proxy}/_faults/reset", None)


def _post(url: str, context: ssl.SSLContext | None) -> None:
    request = urllib.request.Request(url, data=b"{}", method="POST")  # noqa: S310 - local only
    with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
        json.loads(response.read())
