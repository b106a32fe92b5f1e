"""The arm64 build `make test` makes: right architecture, bytecode shipped, far under Lambda's
size limits."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

from local.build_report import LAYER_BUDGET, BuildReport, inspect, ships_bytecode
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
    assert report.sizes["SharedLayer"] <= LAYER_BUDGET  # urllib3 included (CVE-2025-66471)
    # Far under Lambda's 250 MB: each function with its layer within a quarter of it.
    assert max(report.deployed_sizes.values()) <= 250 * 1024 * 1024 // 4
    assert report.problems == []


@pytest.mark.skipif(not BUILD.exists(), reason="run `make build` (part of `make test`) first")
def test_every_module_ships_bytecode_lambda_loads_without_compiling() -> None:
    # Lambda's code directories are read-only: a module without its .pyc is compiled again on
    # every cold start. The build compiles them with unchecked-hash (zip timestamps drift).
    report = inspect(BUILD)

    assert report.modules > 100  # the layer's Powertools and the functions' pydantic at least
    assert report.without_bytecode == []


@pytest.mark.parametrize(
    ("mode", "counts"),
    [
        (None, False),  # no .pyc at all
        (py_compile.PycInvalidationMode.TIMESTAMP, False),  # stale once unzipped
        (py_compile.PycInvalidationMode.CHECKED_HASH, False),  # hashes the source every start
        (py_compile.PycInvalidationMode.UNCHECKED_HASH, True),
    ],
)
def test_only_bytecode_loaded_as_it_is_counts_as_shipped(
    tmp_path: Path, mode: py_compile.PycInvalidationMode | None, counts: bool
) -> None:
    module = tmp_path / "handler.py"
    module.write_text("ANSWER = 42\n")
    if mode is not None:
        py_compile.compile(str(module), invalidation_mode=mode, doraise=True)

    assert ships_bytecode(module) is counts


def test_a_layer_over_its_budget_is_a_problem() -> None:
    report = BuildReport(sizes={"SharedLayer": LAYER_BUDGET + 1}, layers=frozenset({"SharedLayer"}))

    assert report.problems == ["layer SharedLayer is 25.0 MiB unzipped, over its 25.0 MiB budget"]
