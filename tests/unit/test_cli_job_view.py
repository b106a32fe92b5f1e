"""`pika-pipeline status` of a waiting job says where it stands in the queue."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from pika_pipeline_cli.views import job_view


def _shown(item: dict[str, Any]) -> list[str]:
    console = Console(width=200, record=True)
    console.print(job_view({"job_id": "j-1", "status": "QUEUED"} | item))
    return [" ".join(line.split()) for line in console.export_text().splitlines()]


@pytest.mark.parametrize(
    ("position", "shown"),
    [
        (1, "Position next"),
        (2, "Position 1 job(s) ahead of it"),
        (5, "Position 4 job(s) ahead of it"),
    ],
)
def test_a_waiting_job_shows_how_many_jobs_go_before_it(position: int, shown: str) -> None:
    # The reconciler numbers the head of the queue 1 (dispatch/queue_report.py).
    assert shown in _shown({"queue_position": position})
