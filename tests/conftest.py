"""Shared fixtures: the local stack, started once per test session, and clients a user would use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.stack import LocalStack, StackInfo
from tests.support.pipeline import Pipeline


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
    }
    with LocalStack(state_dir, parameters=parameters, run_schedules=False) as info:
        yield info


@pytest.fixture(scope="session")
def pipeline(stack: StackInfo) -> Pipeline:
    return Pipeline(stack)
