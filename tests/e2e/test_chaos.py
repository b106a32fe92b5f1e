"""The fault-injected load run, reduced: every upload ends exactly once despite the faults."""

from __future__ import annotations

import pytest

from local.chaos import run


@pytest.mark.stack  # local.chaos starts a stack of its own
def test_a_burst_of_uploads_under_faults_ends_with_every_job_final_and_nothing_lost() -> None:
    report = run(uploads=60, kills=2, seed=11, timeout=240)

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
