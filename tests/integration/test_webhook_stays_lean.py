"""The webhook races fal's 15 s delivery timeout: its cold start must not load fal_client."""

from __future__ import annotations

import os
import subprocess
import sys

from local.template import REPO_ROOT


def test_importing_the_webhook_handler_does_not_import_fal_client() -> None:
    probe = (
        "import sys, app; "
        "print(*(name in sys.modules for name in ('fal_client', 'httpx', 'pydantic')))"
    )
    env = {
        **os.environ,
        # Lambda's import order: function code, then the layer.
        "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT / "functions" / "webhook"), str(REPO_ROOT / "layers" / "shared")]
        ),
    }

    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False", "False"]


def test_the_webhook_package_declares_no_fal_dependency() -> None:
    requirements = REPO_ROOT / "functions" / "webhook" / "requirements.txt"
    layer_file = REPO_ROOT / "layers" / "shared" / "requirements.txt"
    layer = "\n".join(line.split("#", 1)[0] for line in layer_file.read_text().splitlines())
    assert not requirements.exists() or "fal" not in requirements.read_text()
    assert "fal-client" not in layer
    # pydantic is the submit path's (upload metadata); the webhook's package does not carry it.
    assert "pydantic" not in layer
