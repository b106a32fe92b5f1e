"""The webhook races fal's 15 s delivery timeout: its cold start must not load fal_client."""

from __future__ import annotations

import os
import subprocess
import sys

from local.template import REPO_ROOT


def test_importing_the_webhook_handler_does_not_import_fal_client() -> None:
    probe = "import sys, app; print('fal_client' in sys.modules, 'httpx' in sys.modules)"
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

    assert result.stdout.split() == ["False", "False"]


def test_the_webhook_package_declares_no_fal_dependency() -> None:
    requirements = REPO_ROOT / "functions" / "webhook" / "requirements.txt"
    layer = (REPO_ROOT / "layers" / "shared" / "requirements.txt").read_text()
    assert not requirements.exists() or "fal" not in requirements.read_text()
    assert "fal-client" not in layer
