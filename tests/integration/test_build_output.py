"""The arm64 build `make test` makes: right architecture, far under Lambda's size limits."""

from __future__ import annotations

import pytest

from local.build_report import inspect
from local.template import REPO_ROOT

BUILD = REPO_ROOT / ".aws-sam" / "build"


@pytest.mark.skipif(not BUILD.exists(), reason="run `make build` (part of `make test`) first")
def test_every_native_extension_is_built_for_arm64_and_each_artifact_is_small() -> None:
    report = inspect(BUILD)

    assert report.native_extensions > 0  # pydantic-core and cryptography at least
    assert report.wrong_architecture == []
    assert set(report.sizes) >= {"SubmitFunction", "WebhookFunction", "SharedLayer"}
    assert report.sizes["WebhookFunction"] < 1024 * 1024  # its code only: no fal_client
    assert report.layers == {"SharedLayer"}
    # Far under Lambda's 250 MB: each function with its layer within a quarter of it.
    assert max(report.deployed_sizes.values()) <= 250 * 1024 * 1024 // 4
    assert report.problems == []
