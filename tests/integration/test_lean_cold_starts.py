"""Cold starts load only what every invocation needs.

The webhook races fal's 15 s delivery timeout: it never loads fal_client or pydantic. The submit
and reconciler functions load them with the first upload they read or the first job that needs
fal (pika_pipeline.fal.on_demand), not at init: duplicates, ignored keys and idle reconciler runs
never pay for them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from local.template import REPO_ROOT

HEAVY = ("fal_client", "httpx", "pydantic")


def _loaded_after_import(function: str) -> list[str]:
    probe = f"import sys, app; print(*(name in sys.modules for name in {HEAVY!r}))"
    env = {
        **os.environ,
        # Lambda's import order: function code, then the layer.
        "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT / "functions" / function), str(REPO_ROOT / "layers" / "shared")]
        ),
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return [
        name for name, loaded in zip(HEAVY, result.stdout.split(), strict=True) if loaded == "True"
    ]


@pytest.mark.parametrize("function", ["webhook", "submit", "reconciler"])
def test_importing_a_handler_loads_neither_fal_client_nor_pydantic(function: str) -> None:
    assert _loaded_after_import(function) == []


def test_the_webhook_package_declares_no_fal_dependency() -> None:
    requirements = REPO_ROOT / "functions" / "webhook" / "requirements.txt"
    layer_file = REPO_ROOT / "layers" / "shared" / "requirements.txt"
    layer = "\n".join(line.split("#", 1)[0] for line in layer_file.read_text().splitlines())
    assert not requirements.exists() or "fal" not in requirements.read_text()
    assert "fal-client" not in layer
    # pydantic is the submit path's (upload metadata); the webhook's package does not carry it.
    assert "pydantic" not in layer
