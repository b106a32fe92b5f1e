"""The benchmark command runs end to end and reports every figure (it is not judged on timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import COLUMNS, FIGURES
from local.template import REPO_ROOT


@pytest.mark.stack
def test_quick_benchmark_prints_every_figure_and_writes_the_document(tmp_path: Path) -> None:
    output = tmp_path / "PERFORMANCE.md"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    table = completed.stdout
    assert all(column in table.splitlines()[0] for column in COLUMNS)
    rows = [line for line in table.splitlines() if line and not line.startswith(("-", " "))]
    for figure in FIGURES:
        assert any(row.startswith(figure) for row in rows), f"no row for {figure!r}"
    document = output.read_text(encoding="utf-8")
    for figure in FIGURES:
        assert f"| {figure}" in document
    for heading in ("## Results", "## How to reproduce", "nproc", "python"):
        assert heading in document
    # The calls each function counted with its clients' hooks are the calls the wire saw.
    assert document.count("the wire saw the same calls") == 2
