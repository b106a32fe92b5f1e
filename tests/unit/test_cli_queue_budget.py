"""`pika-pipeline queue` tells jobs that wait for budget from jobs that wait for a slot."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console

from pika_pipeline_cli.queue_control import PauseState, QueueSnapshot, WaitingJob
from pika_pipeline_cli.views import queue_view


def _queue(prices: list[str], *, left: str | None) -> QueueSnapshot:
    return QueueSnapshot(
        waiting=[
            WaitingJob(
                job_id=f"job-{n}",
                lane="normal",
                batch="catalog",
                queued_at=None,
                source_key=f"uploads/catalog/{n}.jpg",
                price_usd=Decimal(price),
            )
            for n, price in enumerate(prices)
        ],
        in_flight=3,
        concurrency=2,
        headroom=1,
        pause=PauseState(paused=False),
        rate_per_second=None,
        budget_left_usd=None if left is None else Decimal(left),
    )


def _shown(queue: QueueSnapshot) -> str:
    console = Console(width=200, record=True)
    console.print(queue_view(queue))
    return console.export_text()


def test_jobs_from_the_first_that_the_budget_left_cannot_pay_wait_for_budget() -> None:
    # $1.00 left: two videos at $0.40 fit; the third does not, and nothing may overtake it,
    # not even the cheaper one behind it.
    queue = _queue(["0.40", "0.40", "0.40", "0.20"], left="1.00")

    assert [job.job_id for job in queue.waiting_for_budget()] == ["job-2", "job-3"]
    assert queue.as_json()["waiting_for_budget"] == 2
    assert "2 job(s) wait for budget, not for a slot" in _shown(queue)


def test_with_room_in_the_budget_the_jobs_wait_for_a_slot() -> None:
    queue = _queue(["0.40", "0.40"], left="0.80")

    assert queue.waiting_for_budget() == []
    assert "$0.80 left; no job waits for budget" in _shown(queue)


def test_without_a_limit_no_job_waits_for_budget() -> None:
    queue = _queue(["0.40"] * 3, left=None)

    assert queue.waiting_for_budget() == []
    assert queue.as_json()["budget_left_usd"] is None
    assert "Budget" not in _shown(queue)
