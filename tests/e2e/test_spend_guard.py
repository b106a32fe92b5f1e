"""The spend guard, as an operator meets it: a daily budget that stops dispatch at exactly what it
can pay, `pika-pipeline budget set` releasing the jobs that wait, refunds only where fal does not
charge, and the `queue`, `spend` and `budget` views.

A local stack of its own (the day's spend it accumulates must not hold up the session's other
tests), with DailyBudgetUSD at $1.00 and fal's capacity far above what the budget pays for, so
that the budget and nothing else is what makes jobs wait. The tests share the day's ledger: each
one raises the budget it needs with `budget set`, as an operator would, except the first, which
is about the template's default and runs first.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from local.stack import LocalStack
from local.template import REPO_ROOT
from pika_pipeline.fal import pika
from pika_pipeline.fal.prices import usd_per_video
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES
from tests.e2e.test_cli import cli
from tests.support.pipeline import Pipeline, eventually

pytestmark = pytest.mark.stack

DAILY_BUDGET = Decimal("1.00")
PRICE = usd_per_video(pika.ENDPOINT)  # the stack's FalEndpoint: the default, v2.1 ($0.40)
FITS = int(DAILY_BUDGET // PRICE)  # floor(budget / price): 2
FAL_CONCURRENCY = 10  # never the limit here
# The command as this checkout has it (the shared virtualenv's script may import another's).
THIS_CHECKOUT = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(str(REPO_ROOT / part) for part in ("layers/shared", "cli")),
}


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, Path]]:
    """The pipeline, and the stack.json the CLI is given."""
    state_dir = tmp_path_factory.mktemp("budget-stack")
    parameters = {
        "DailyBudgetUSD": str(DAILY_BUDGET),
        "FalConcurrency": str(FAL_CONCURRENCY),
        "SubmitRetryBaseSeconds": "1",
        "FalTimeoutSeconds": "2",
        "ReconcileAfterSeconds": "1",
        "JobDeadlineSeconds": "8",
    }
    with LocalStack(state_dir, parameters=parameters, run_schedules=False) as info:
        yield Pipeline(info), state_dir / "stack.json"


@pytest.fixture
def pipeline(budgeted: tuple[Pipeline, Path]) -> Pipeline:
    """The pipeline with fal's emulator as new: no fault armed, no request remembered."""
    budgeted[0].fal_reset()
    budgeted[0].fal_account(concurrency=FAL_CONCURRENCY)
    return budgeted[0]


def run(budgeted: tuple[Pipeline, Path], *args: str) -> CompletedProcess[str]:
    done = cli("--local-stack", str(budgeted[1]), *args, env=THIS_CHECKOUT)
    assert done.returncode == 0, done.stderr
    return done


def budget(budgeted: tuple[Pipeline, Path]) -> dict[str, Any]:
    """`pika-pipeline budget --json`, its amounts as Decimals."""
    shown: dict[str, Any] = json.loads(run(budgeted, "budget", "--json").stdout)
    return {
        key: Decimal(value) if key.endswith("_usd") and value is not None else value
        for key, value in shown.items()
    }


def room_for(budgeted: tuple[Pipeline, Path], videos: int) -> Decimal:
    """`budget set --daily` to what today has spent plus ``videos`` more; returns what was
    spent before them."""
    spent: Decimal = budget(budgeted)["spent_today_usd"]
    run(budgeted, "budget", "set", "--daily", str(spent + videos * PRICE))
    return spent


def upload(pipeline: Pipeline, batch: str, name: str) -> str:
    return pipeline.upload({"prompt": "a slow pan", "duration": "1"}, key=f"uploads/{batch}/{name}")


def dispatch_order(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(jobs, key=lambda job: str(job["queue_order"]))


def refunded(pipeline: Pipeline, job_id: str) -> dict[str, Any]:
    """The job once its refund is written: just after its FAILED, by the same function."""
    return eventually(
        lambda: job if "refunded_usd" in (job := pipeline.job(job_id) or {}) else None
    )


def wait_all_final(pipeline: Pipeline, job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    def final() -> list[dict[str, Any]] | None:
        jobs = [pipeline.job(job_id) or {} for job_id in job_ids]
        return jobs if all(job.get("status") in TERMINAL_STATUSES for job in jobs) else None

    return eventually(final, timeout=timeout)


def test_a_daily_budget_sends_fal_exactly_what_it_pays_for_and_budget_set_releases_the_rest(
    budgeted: tuple[Pipeline, Path], pipeline: Pipeline
) -> None:
    # given: the template's DailyBudgetUSD ($1.00, nothing spent yet: this test runs first) and
    # a drop of three more images than it pays for at $0.40
    assert budget(budgeted)["daily_usd"] == DAILY_BUDGET
    batch = f"drop-{uuid.uuid4().hex[:6]}"
    job_ids = [upload(pipeline, batch, f"{n}.jpg") for n in range(FITS + 3)]

    # when the pipeline has done all it can with them
    def settled() -> list[dict[str, Any]] | None:
        jobs = [pipeline.job(job_id) or {} for job_id in job_ids]
        done = [job for job in jobs if job.get("status") == "COMPLETED"]
        waiting = [job for job in jobs if job.get("status") == "QUEUED"]
        marked = [job for job in waiting if job.get("waiting_for") == "budget"]
        return jobs if (len(done), len(waiting), bool(marked)) == (FITS, 3, True) else None

    jobs = eventually(settled, timeout=90)
    pipeline.wait_for_queue_drained()  # every upload and completion nudge was dispatched on

    # then: exactly floor($1.00 / $0.40) = 2 reached fal and became videos; the rest wait for
    # budget in the queue, none FAILED and none sent
    waiting = dispatch_order([job for job in jobs if job["status"] == "QUEUED"])
    completed = [job for job in jobs if job["status"] == "COMPLETED"]
    assert sum(len(pipeline.fal_submits_for(job_id)) for job_id in job_ids) == FITS
    assert all(len(pipeline.fal_submits_for(job["job_id"])) == 1 for job in completed)
    assert all(Decimal(job["reserved_usd"]) == PRICE for job in completed)
    # The dispatcher stopped at the head of the queue and says so on it.
    assert waiting[0]["waiting_for"] == "budget"
    assert all("error_code" not in job for job in waiting)
    spent = budget(budgeted)
    assert (spent["spent_today_usd"], spent["videos_today"]) == (FITS * PRICE, FITS)
    assert spent["remaining_today_usd"] == DAILY_BUDGET - FITS * PRICE
    # `queue` tells the operator why they wait: budget, not fal's capacity.
    queue = json.loads(run(budgeted, "queue", "--json").stdout)
    assert (queue["waiting"], queue["waiting_for_budget"], queue["in_flight"]) == (3, 3, 0)
    shown = run(budgeted, "queue").stdout
    assert "Budget:   $0.20 left; 3 job(s) wait for budget, not for a slot" in shown
    assert "Drain:    not within the budget left" in shown
    # The reconciler's run shows it on each of them too, where `status` reads it.
    pipeline.reconcile()
    assert [(pipeline.job(job["job_id"]) or {}).get("waiting_for") for job in waiting] == [
        "budget"
    ] * 3
    assert "budget (pika-pipeline budget)" in run(budgeted, "status", waiting[-1]["job_id"]).stdout

    # when the operator raises the day's budget to pay for all five
    raised_at = datetime.now(UTC)
    raised = run(budgeted, "budget", "set", "--daily", str(len(job_ids) * PRICE))

    # then the waiting jobs go at once (no reconciler runs here: only `budget set`'s nudge can
    # have sent them) and become videos, and the day has spent exactly its budget
    assert "set by" in raised.stdout
    jobs = wait_all_final(pipeline, job_ids, timeout=60)
    assert [job["status"] for job in jobs] == ["COMPLETED"] * len(job_ids)
    for job in waiting:
        dispatched = datetime.fromisoformat(pipeline.job(job["job_id"])["dispatched_at"])  # type: ignore[index]
        assert (dispatched - raised_at).total_seconds() < 15
    assert sum(len(pipeline.fal_submits_for(job_id)) for job_id in job_ids) == len(job_ids)
    spent = budget(budgeted)
    assert spent["spent_today_usd"] == len(job_ids) * PRICE
    assert spent["remaining_today_usd"] == 0
    assert json.loads(run(budgeted, "queue", "--json").stdout)["waiting_for_budget"] == 0


# --- refunds: only what fal does not charge (pika_pipeline/spend/refund_rules.py) -------------


def test_a_submit_fal_refuses_is_refunded(
    budgeted: tuple[Pipeline, Path], pipeline: Pipeline
) -> None:
    before = room_for(budgeted, videos=1)
    refunds_before = budget(budgeted)["refunds_today"]
    pipeline.fal_faults(submit=[403])  # fal turns the request away: nothing exists to bill

    job_id = upload(pipeline, f"refused-{uuid.uuid4().hex[:6]}", "a.jpg")
    job = refunded(pipeline, job_id)

    assert (job["status"], job["error_code"]) == ("FAILED", "fal_auth")
    assert pipeline.fal_requests_for(job["job_id"]) == []  # fal created nothing
    assert [s["status"] for s in pipeline.refused_fal_submits_for(job["job_id"])] == [403]
    assert Decimal(job["refunded_usd"]) == PRICE
    assert job["refund_reason"] == "fal refused the submit: fal_auth"
    assert "reserved_usd" not in job
    after = budget(budgeted)
    assert after["spent_today_usd"] == before  # the reservation is back in the day's budget
    assert after["refunds_today"] == refunds_before + 1


def test_a_submit_fal_never_accepts_until_the_deadline_is_refunded(
    budgeted: tuple[Pipeline, Path], pipeline: Pipeline
) -> None:
    before = room_for(budgeted, videos=1)
    # fal answers every submit with 503: each try created nothing, the last one gives up.
    pipeline.fal_faults(rates={"submit": {"503": 1.0}})

    job_id = upload(pipeline, f"outage-{uuid.uuid4().hex[:6]}", "a.jpg")
    pipeline.wait_for_status(job_id, "PENDING")
    pipeline.reconcile_until_final(job_id, runs=30)
    job = refunded(pipeline, job_id)

    assert (job["status"], job["error_code"]) == ("FAILED", "fal_unavailable")
    assert pipeline.fal_requests_for(job_id) == []
    assert {s["status"] for s in pipeline.refused_fal_submits_for(job_id)} == {503}
    assert Decimal(job["refunded_usd"]) == PRICE
    assert job["refund_reason"] == "fal never accepted the submit: fal_server_error"
    assert budget(budgeted)["spent_today_usd"] == before


def test_a_server_error_result_from_fal_is_refunded(
    budgeted: tuple[Pipeline, Path], pipeline: Pipeline
) -> None:
    before = room_for(budgeted, videos=1)
    pipeline.fal_faults(outcome=["error"])  # fal accepts it, then fails it with a 500

    job = refunded(pipeline, upload(pipeline, f"fal-500-{uuid.uuid4().hex[:6]}", "a.jpg"))

    assert (job["status"], job["error_code"]) == ("FAILED", "fal_error")
    assert len(pipeline.fal_requests_for(job["job_id"])) == 1
    assert Decimal(job["refunded_usd"]) == PRICE
    assert job["refund_reason"] == "fal server error: Invalid status code: 500"
    assert budget(budgeted)["spent_today_usd"] == before


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"outcome": ["validation_error"]}, id="a 422 result"),
        pytest.param({"submit": [422]}, id="a 422 answer to the submit"),
    ],
)
def test_what_fal_may_charge_stays_spent(
    budgeted: tuple[Pipeline, Path], pipeline: Pipeline, fault: dict[str, Any]
) -> None:
    # fal's FAQ: "Client-side errors like invalid inputs (HTTP 422) may still be charged".
    before = room_for(budgeted, videos=1)
    pipeline.fal_faults(**fault)

    mark = pipeline.log_mark("WebhookFunction")
    job_id = upload(pipeline, f"fal-422-{uuid.uuid4().hex[:6]}", "a.jpg")
    pipeline.wait_for_job(job_id)
    # Where a refund would be written, it is before these: the function that failed the job
    # has finished with it.
    if "outcome" in fault:
        pipeline.wait_for_log("WebhookFunction", "The job failed", since=mark, job_id=job_id)
    else:
        pipeline.wait_for_queue_drained()
    job = pipeline.job(job_id) or {}

    assert (job["status"], job["error_code"]) == ("FAILED", "fal_validation")
    assert Decimal(job["reserved_usd"]) == PRICE
    assert "refunded_usd" not in job
    assert budget(budgeted)["spent_today_usd"] == before + PRICE


# --- what an operator reads -------------------------------------------------------------------


def test_spend_and_budget_show_videos_dollars_refunds_and_what_is_still_at_fal(
    budgeted: tuple[Pipeline, Path], pipeline: Pipeline
) -> None:
    # given one batch's three videos: one made, one fal failed with a 500 (refunded), one that
    # fal holds in its queue (its account runs nothing for now)
    room_for(budgeted, videos=3)
    batch = f"report-{uuid.uuid4().hex[:6]}"
    made = pipeline.wait_for_job(upload(pipeline, batch, "made.jpg"))
    pipeline.fal_faults(outcome=["error"])
    failed = refunded(pipeline, upload(pipeline, batch, "failed.jpg"))
    pipeline.fal_account(concurrency=0)
    held = pipeline.wait_for_status(upload(pipeline, batch, "held.jpg"), "SUBMITTED")
    assert (made["status"], failed["status"]) == ("COMPLETED", "FAILED")

    try:
        # when the operator asks what was spent
        report = json.loads(run(budgeted, "spend", "--days", "1", "--json").stdout)
        shown = run(budgeted, "spend", "--days", "1").stdout
        limits = run(budgeted, "budget").stdout
        state = budget(budgeted)
    finally:
        pipeline.fal_account(concurrency=FAL_CONCURRENCY)

    # then: per batch, the videos paid for, the one still at fal, the one given back
    (row,) = [row for row in report["batches"] if row["batch"] == batch]
    assert row["day"] == state["day"]
    assert (row["videos"], Decimal(row["usd"])) == (2, 2 * PRICE)
    assert (row["in_flight_videos"], Decimal(row["in_flight_usd"])) == (1, PRICE)
    assert (row["refunded_videos"], Decimal(row["refunded_usd"])) == (1, PRICE)
    # The day's row adds up every test's jobs of this stack: what the ledger says.
    today = report["days"][state["day"]]
    assert Decimal(today["usd"]) == state["spent_today_usd"]
    assert Decimal(today["refunded_usd"]) == state["refunded_today_usd"]
    assert batch in shown
    assert "1 ($0.40)" in shown  # the batch's one video at fal, and its one refund
    # `budget`: the limit in force, who set it, the spend that counts against it.
    assert state["remaining_today_usd"] == state["daily_usd"] - state["spent_today_usd"]
    assert f"${state['daily_usd']:.2f}" in limits
    assert "set by" in limits
    assert f"${state['spent_today_usd']:.2f}" in limits
    assert pipeline.wait_for_job(held["job_id"])["status"] == "COMPLETED"
