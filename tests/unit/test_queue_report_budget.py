"""The reconciler's queue report shows on every waiting job whether it waits for budget, not only
on the head of the queue the dispatcher stopped at."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pika_pipeline.dispatch.control import PauseState
from pika_pipeline.dispatch.order import WaitingJob
from pika_pipeline.dispatch.queue_report import QueueReport
from pika_pipeline.dispatch.slots import SlotView

NOW = 1_780_000_000.0


@dataclass
class Queue:
    jobs: list[WaitingJob]

    def all(self) -> list[WaitingJob]:
        return self.jobs


class FullSlots:
    def view(self) -> SlotView:
        return SlotView(free=[], in_flight=3)

    def dispatched_total(self) -> int:
        return 0


class Running:
    def state(self, *, fresh: bool = False) -> PauseState:
        return PauseState(paused=False, paused_at=None)


@dataclass
class Positions:
    shown: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set_queue_position(self, job_id: str, **shown: Any) -> None:
        self.shown[job_id] = shown


class Control:
    def get_item(self, **_: Any) -> dict[str, Any]:
        return {}

    def put_item(self, **_: Any) -> None:
        pass


@dataclass
class Budget:
    left: Decimal | None

    def left_usd(self) -> Decimal | None:
        return self.left


def _report(prices: list[str | None], budget: Budget | None) -> dict[str, dict[str, Any]]:
    waiting = [
        WaitingJob(
            job_id=f"job-{n}",
            lane="normal",
            order=f"{n:012d}#2026-06-01T12:00:00.000+00:00#job-{n}",
            price_usd=None if price is None else Decimal(price),
        )
        for n, price in enumerate(prices)
    ]
    positions = Positions()
    QueueReport(
        waiting=Queue(waiting),  # type: ignore[arg-type]
        slots=FullSlots(),  # type: ignore[arg-type]
        pause=Running(),  # type: ignore[arg-type]
        repository=positions,  # type: ignore[arg-type]
        control=Control,  # type: ignore[arg-type]
        clock=lambda: NOW,
        budget=budget,  # type: ignore[arg-type]
    ).refresh()
    return positions.shown


def test_every_job_from_the_first_the_budget_cannot_pay_is_shown_waiting_for_budget() -> None:
    # $1.00 left: two at $0.40 fit; the third does not, and the cheaper fourth cannot overtake.
    shown = _report(["0.40", "0.40", "0.40", "0.20"], Budget(Decimal("1.00")))

    assert [shown[f"job-{n}"]["waiting_for_budget"] for n in range(4)] == [
        False,
        False,
        True,
        True,
    ]
    assert [shown[f"job-{n}"]["position"] for n in range(4)] == [1, 2, 3, 4]


def test_without_a_limit_no_job_waits_for_budget_and_an_old_mark_is_cleared() -> None:
    shown = _report(["0.40", "0.40"], Budget(None))

    assert {s["waiting_for_budget"] for s in shown.values()} == {False}


def test_without_a_spend_guard_the_mark_is_left_as_it_is() -> None:
    shown = _report(["0.40"], None)

    assert shown["job-0"]["waiting_for_budget"] is None


def test_a_job_without_a_recorded_price_is_not_judged_by_it() -> None:
    shown = _report([None, "0.40"], Budget(Decimal("0.40")))

    assert [shown[f"job-{n}"]["waiting_for_budget"] for n in range(2)] == [False, False]
