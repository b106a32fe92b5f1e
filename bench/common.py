"""What every benchmark module shares: paths, medians, and running a measuring subprocess."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from local.aws import process_environment
from local.template import REPO_ROOT

LAYER_DIR = REPO_ROOT / "layers" / "shared"
LAYER_REQUIREMENTS = LAYER_DIR / "requirements.txt"
FUNCTIONS_DIR = REPO_ROOT / "functions"
MIB = 1024 * 1024


class BenchError(RuntimeError):
    """A figure could not be measured (as opposed to a target that was missed)."""


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat (0, 0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except OSError:
        return 0, 0
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def median(values: Sequence[float]) -> float:
    if not values:
        raise BenchError("no samples")
    return float(statistics.median(values))


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else float("inf")


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment minus anything AWS-, fal- or Powertools-related, plus extra.

    PYTHONPATH is dropped too, so each child sees exactly the paths its benchmark gives it.
    """
    base = {k: v for k, v in process_environment({}).items() if k != "PYTHONPATH"}
    return {**base, **extra}


def python_path(*entries: Path | str) -> str:
    return os.pathsep.join(str(entry) for entry in entries)


def run_json_child(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: Any = None,
    cwd: Path | None = None,
    timeout: float = 600,
) -> dict[str, Any]:
    """Runs ``python ARGS`` and returns the JSON object it prints on its last stdout line."""
    completed = subprocess.run(
        [sys.executable, *args],
        input=None if stdin is None else json.dumps(stdin),
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd or REPO_ROOT,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-15:]
        raise BenchError(
            f"child {' '.join(args[:3])} exited {completed.returncode}: " + "\n".join(tail)
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result
