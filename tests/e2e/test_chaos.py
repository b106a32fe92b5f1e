"""The fault-injected load run, reduced: every upload ends exactly once despite the faults, the
budget runs out part-way without a cent over, every finished job is announced by webhook, and a
drop larger than fal's account never has more than the cap outstanding at fal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from local.chaos import EMULATOR_CONCURRENCY, FAL_CAP, PRICE, run


@pytest.mark.stack  # local.chaos starts a stack of its own
def test_a_burst_of_uploads_under_faults_ends_with_every_job_final_and_nothing_lost() -> None:
    # given a daily budget of 70% of the drop's price (60 x $0.40 x 0.7 = $16.80: 42 videos)
    report = run(uploads=60, kills=2, seed=11, timeout=240, over_capacity=30)

    assert report.problems == []
    rows = report.rows
    assert rows["uploads"] == 60
    assert (
        rows["completed"]
        + sum((rows["failed (by code)"] or {}).values())
        + sum((rows["rejected (by code)"] or {}).values())
        + rows["expired"]
        == 60
    )
    assert rows["fal requests the job never recorded"] == 0
    assert rows["submit function kills"] == 2
    assert rows["... of them with a fal call in flight"] >= 1
    assert rows["dead letters"] == 0
    assert rows["undelivered upload events"] == 0
    # Every extra paid request has a cause: a kill while fal held the call's answer, or a submit
    # call that got no answer in time (fal may have queued it all the same).
    assert (
        rows["extra fal requests (ambiguous timeouts, crashes mid-call)"]
        <= rows["... explained by: fal calls in flight at kills"]
        + rows["... explained by: submit calls fal did not answer in time"]
    )
    # The budget ran out part-way: within it to the cent, the rest waiting QUEUED until raised.
    budget = rows["daily budget at the start (USD)"]
    assert budget == Decimal("16.80")
    assert rows["highest spend seen while dispatching (USD)"] <= budget
    assert budget - PRICE < rows["spent when it ran out (USD, ledger)"] <= budget
    assert rows["jobs waiting for budget (QUEUED)"] > 0
    assert rows["... of them showing waiting_for=budget"] >= 1
    assert rows["daily budget raised to (USD)"] == rows["daily budget in force (USD)"]
    # Every finished job announced to NotifyUrl exactly once by webhook id, despite 5xx answers.
    # None lost, not even to a kill or a failed PutEvents between a job's final write and its
    # event: the reconciler publishes again what the notifier has not acknowledged.
    assert rows["notifications lost"] == 0
    assert rows["webhooks delivered (unique webhook ids)"] == 60
    assert rows["webhook deliveries the receiver failed (5xx at random)"] > 0
    assert rows["dead-lettered notifications"] == 0
    # The over-capacity phase: 30 uploads against an account of FalConcurrency, faults on.
    assert rows["over capacity: uploads"] == 30
    peak = int(str(rows["over capacity: peak requests outstanding at fal"]).split()[0])
    # The drop filled fal's account (it was a test of the gate) and never went past the cap.
    assert EMULATOR_CONCURRENCY <= peak <= FAL_CAP
