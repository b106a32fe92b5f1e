"""`pika-pipeline batch` and `batches` show the open jobs by where they are (waiting in the
pipeline, or at fal) and where the batch's summary is: being announced, or published."""

from __future__ import annotations

from typing import Any

from rich.console import Console, RenderableType

from pika_pipeline.batches.progress import BatchProgress
from pika_pipeline_cli.batches import as_json
from pika_pipeline_cli.views import batch_view, batches_view

NOW = 1_800_000_000.0
UPLOAD_AT = "2027-01-15T08:00:00.000+00:00"


def _batch(**item: Any) -> BatchProgress:
    return BatchProgress.from_item(
        {"pk": "progress#spring", "batch": "spring", "last_upload_at": UPLOAD_AT} | item
    )


def _shown(view: RenderableType) -> list[str]:
    console = Console(width=200, record=True)
    console.print(view)
    return [" ".join(line.split()) for line in console.export_text().splitlines()]


def test_a_running_batch_shows_its_waiting_and_at_fal_jobs_apart() -> None:
    spring = _batch(jobs=10, open_jobs=7, queued=5, at_fal=2, status_COMPLETED=3, summary_due="due")

    lines = _shown(batch_view(spring, now_epoch=NOW))

    assert "waiting 5" in lines
    assert "at fal 2" in lines
    assert "COMPLETED 3" in lines
    assert any("3/10 finished" in line for line in lines)  # the bar counts final jobs only
    assert "Not complete yet" in lines
    shown = as_json(spring, now_epoch=NOW)
    assert (shown["waiting"], shown["at_fal"], shown["open"]) == (5, 2, 7)
    assert shown["summary_being_announced"] is None


def test_jobs_counted_before_the_split_show_as_waiting_or_at_fal() -> None:
    spring = _batch(jobs=4, open_jobs=3, queued=1, at_fal=0, status_COMPLETED=1)

    lines = _shown(batch_view(spring, now_epoch=NOW))

    assert "waiting 1" in lines
    assert "waiting or at fal 2" in lines


def test_a_summary_whose_lease_holds_is_being_announced() -> None:
    announcing = _batch(
        jobs=3,
        open_jobs=0,
        status_COMPLETED=3,
        summary_due="due",
        summaries=1,
        announcing=2,
        lease_until=NOW + 300,
    )

    assert "Summary 2 being announced" in _shown(batch_view(announcing, now_epoch=NOW))
    assert as_json(announcing, now_epoch=NOW)["summary_being_announced"] == 2
    listed = _shown(batches_view([announcing], now_epoch=NOW))
    assert any(line.startswith("spring 3 0 0 3 0 $0.00 2 being announced") for line in listed)


def test_a_lease_that_ended_without_its_summary_is_not_shown_as_being_announced() -> None:
    # The run holding it crashed: the batch is still due, the next run announces it.
    crashed = _batch(jobs=3, status_COMPLETED=3, summary_due="due", announcing=1, lease_until=NOW)

    lines = _shown(batch_view(crashed, now_epoch=NOW + 1))

    assert not any("being announced" in line for line in lines)
    assert "Complete once no upload comes" in lines
    assert as_json(crashed, now_epoch=NOW + 1)["summary_being_announced"] is None


def test_a_published_summary_shows_as_completed() -> None:
    done = _batch(jobs=3, status_COMPLETED=2, status_FAILED=1, summaries=1, code_fal_error=1)

    assert "Completed (summary 1 published)" in _shown(batch_view(done, now_epoch=NOW))
    listed = _shown(batches_view([done], now_epoch=NOW))
    assert any(line.startswith("spring 3 0 0 2 1 $0.00 1 published") for line in listed)
