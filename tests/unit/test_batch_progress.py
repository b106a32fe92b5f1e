"""A batch's live counters and its one summary: what a job's writes do to them, when a batch is
finished, and that no transition lost, duplicated or raced can drift them. Against moto
in-process, with the template's JobsTable and ControlTable (and its indexes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pika_pipeline.batches.announcer import BatchAnnouncer
from pika_pipeline.batches.progress import COUNTED_OPEN, BatchProgress, progress_key
from pika_pipeline.dispatch.order import WaitingJob
from pika_pipeline.dispatch.slots import Claim, JobLost, Slots
from pika_pipeline.errors import JobConflict
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.events import BATCH_COMPLETED, SOURCE, JobEvents
from pika_pipeline.jobs.repository import JobRepository
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.notify.messages import webhook_message
from pika_pipeline.spend.budget import BudgetLimits, Reservation
from pika_pipeline.spend.ledger import SpendLedger
from tests.unit.moto_tables import offline_aws, template_table

UPLOAD_AT = "2026-12-04T10:00:00.000+00:00"
UPLOAD_EPOCH = 1796378400.0  # UPLOAD_AT
QUIET = 60
SLOTS = 16
CLAIM_SECONDS = 300


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    offline_aws(monkeypatch)


@pytest.fixture
def tables() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb")
        yield template_table(dynamodb, "JobsTable"), template_table(dynamodb, "ControlTable")


@pytest.fixture
def jobs(tables: tuple[Any, Any]) -> JobRepository:
    table, control = tables
    return JobRepository(lambda: table, control=lambda: control)


def progress(tables: tuple[Any, Any], batch: str = "shop") -> BatchProgress:
    item = tables[1].get_item(Key={"pk": progress_key(batch)}, ConsistentRead=True)["Item"]
    return BatchProgress.from_item(item)


def upload(jobs: JobRepository, job_id: str, *, batch: str = "shop", at: str = UPLOAD_AT) -> None:
    jobs.enqueue(
        {"job_id": job_id, "source_key": f"uploads/{batch}/{job_id}.png", "batch": batch},
        lane="normal",
        order=f"000000000001#{at}#{job_id}",
        queued_at=at,
    )


def dispatch(
    tables: tuple[Any, Any],
    job_id: str,
    *,
    submitted: bool = True,
    seen: dict[str, Any] | None = None,
) -> Claim:
    """The dispatch's slot transaction (with its price's reservation), then, with
    ``submitted``, fal's answer recorded by the submit path. ``seen``: the job as the queue's
    index listed it (default: as it is now)."""
    table, control = tables
    slots = Slots(control=lambda: control, jobs=lambda: table, count=SLOTS)
    item = seen or table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
    claim = slots.take(
        slots.view().free[0],
        WaitingJob(job_id, lane=item["queue_lane"], order=item["queue_order"], item=item),
        attempt=f"attempt-{job_id}",
        now_epoch=UPLOAD_EPOCH,
        claim_seconds=CLAIM_SECONDS,
        reconcile_after_seconds=60,
        reservation=Reservation(
            job_id=job_id,
            price_usd=Decimal("0.2"),
            day="2026-12-04",
            month="2026-12",
            limits=BudgetLimits(daily_usd=Decimal(0), monthly_usd=Decimal(0)),
            day_reserved_usd=None,
        ),
    )
    if submitted:
        JobRepository(lambda: table, control=lambda: control).record_request_id(
            job_id, f"req-{job_id}", attempt=claim.attempt
        )
    return claim


def where(tables: tuple[Any, Any], batch: str = "shop") -> tuple[int, int, int]:
    """The batch's open jobs as `pika-pipeline batch` shows them: (waiting, at fal, open)."""
    shown = progress(tables, batch)
    return shown.queued, shown.at_fal, shown.open_jobs


def test_uploads_results_and_a_rejection_are_counted_by_status_and_code(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    for job_id in ("a", "b", "c"):
        upload(jobs, job_id)
    jobs.record_rejection(
        {
            "job_id": "d",
            "batch": "shop",
            "error_code": ErrorCode.IMAGE_TOO_LARGE,
            "error_message": "too large",
        }
    )
    for job_id in ("a", "b"):
        dispatch(tables, job_id)

    jobs.transition("a", JobStatus.COMPLETED, current=jobs.get("a"))
    jobs.transition(
        "b",
        JobStatus.FAILED,
        attributes={"error_code": ErrorCode.FAL_VALIDATION, "error_message": "no"},
    )

    shop = progress(tables)
    assert shop.jobs == 4
    assert shop.open_jobs == 1  # c still waits
    assert (shop.queued, shop.at_fal) == (1, 0)
    assert shop.statuses["COMPLETED"] == 1
    assert shop.statuses["FAILED"] == 1
    assert shop.statuses["REJECTED"] == 1
    assert shop.failures == {"fal_validation": 1, "image_too_large": 1}
    assert shop.spent_usd == Decimal("0.4")
    assert shop.first_upload_at == UPLOAD_AT


def test_a_duplicate_or_lost_race_moves_no_counter(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    upload(jobs, "a")
    dispatch(tables, "a")
    seen = jobs.get("a")
    jobs.transition("a", JobStatus.COMPLETED, current=seen)
    before = progress(tables)

    with pytest.raises(JobConflict):
        upload(jobs, "a")  # the same upload event, delivered again
    with pytest.raises(JobConflict):
        jobs.transition("a", JobStatus.COMPLETED, current=seen)  # a second delivery, stale view
    with pytest.raises(JobConflict):
        jobs.transition("a", JobStatus.FAILED, attributes={"error_code": ErrorCode.FAL_VALIDATION})

    after = progress(tables)
    assert (after.jobs, after.open_jobs, after.statuses, after.failures) == (
        before.jobs,
        before.open_jobs,
        before.statuses,
        before.failures,
    )


def test_waiting_and_at_fal_jobs_are_counted_apart_from_upload_to_end(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    for job_id in ("a", "b", "c", "d"):
        upload(jobs, job_id)
    assert where(tables) == (4, 0, 4)

    dispatch(tables, "a")  # fal answered: SUBMITTED
    dispatch(tables, "b", submitted=False)  # still PENDING: holds its slot all the same
    assert where(tables) == (2, 2, 4)

    jobs.cancel_waiting("c", by="ops", message="not wanted")
    assert where(tables) == (1, 2, 3)
    jobs.transition("a", JobStatus.COMPLETED, current=jobs.get("a"))
    jobs.transition("b", JobStatus.FAILED, attributes={"error_code": ErrorCode.FAL_VALIDATION})
    assert where(tables) == (1, 0, 1)
    # A waiting job ended through the transition table (as the reconciler's cancel does).
    jobs.transition("d", JobStatus.CANCELLED, attributes={"error_code": ErrorCode.CANCELLED})

    shop = progress(tables)
    assert where(tables) == (0, 0, 0)
    assert (shop.jobs, shop.finished_jobs) == (4, 4)


def test_an_end_seen_from_a_pending_view_of_a_submitted_job_leaves_at_fal(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    upload(jobs, "a")
    claim = dispatch(tables, "a", submitted=False)
    pending = jobs.get("a")
    jobs.record_request_id("a", "req-a", attempt=claim.attempt)  # PENDING -> SUBMITTED

    jobs.transition("a", JobStatus.COMPLETED, current=pending)

    assert where(tables) == (0, 0, 0)
    assert progress(tables).statuses["COMPLETED"] == 1


def test_a_stranded_claim_rejected_leaves_at_fal(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    upload(jobs, "a")
    dispatch(tables, "a", submitted=False)  # the dispatch crashed before calling fal

    jobs.reject_stranded(
        "a",
        now_epoch=int(UPLOAD_EPOCH) + CLAIM_SECONDS + 1,
        code=ErrorCode.OUTSIDE_INPUT_PREFIX,
        message="moved",
    )

    assert where(tables) == (0, 0, 0)
    assert progress(tables).failures == {"outside_input_prefix": 1}


def test_a_dispatch_that_lost_its_job_to_another_dispatcher_moves_no_counter(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    upload(jobs, "a")
    listed = dict(tables[0].get_item(Key={"job_id": "a"}, ConsistentRead=True)["Item"])
    dispatch(tables, "a")

    with pytest.raises(JobLost):
        dispatch(tables, "a", seen=listed)  # the index still listed it waiting

    assert where(tables) == (0, 1, 1)


def test_jobs_counted_before_the_split_move_only_the_open_count(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    for job_id in ("a", "b"):
        upload(jobs, job_id)
        # As the pipeline counted a job before the split: no mark, and no waiting count.
        tables[0].update_item(Key={"job_id": job_id}, UpdateExpression=f"REMOVE {COUNTED_OPEN}")
    tables[1].update_item(Key={"pk": progress_key("shop")}, UpdateExpression="REMOVE queued")
    assert where(tables) == (0, 0, 2)
    assert progress(tables).open_before_split == 2

    dispatch(tables, "a")
    dispatch(tables, "b", submitted=False)
    jobs.transition("a", JobStatus.COMPLETED)
    assert where(tables) == (0, 0, 1)
    jobs.transition("b", JobStatus.FAILED, attributes={"error_code": ErrorCode.FAL_UNAVAILABLE})
    assert where(tables) == (0, 0, 0)

    # Re-driven, it waits again, counted by where it is from now on.
    upload(jobs, "b")
    assert where(tables) == (1, 0, 1)
    dispatch(tables, "b")
    assert where(tables) == (0, 1, 1)
    jobs.transition("b", JobStatus.COMPLETED)
    assert where(tables) == (0, 0, 0)
    assert progress(tables).open_before_split == 0


def test_a_late_result_of_a_submit_that_failed_moves_the_job_between_final_counts(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    upload(jobs, "a")
    dispatch(tables, "a", submitted=False)  # fal never answered the submit
    jobs.transition(
        "a",
        JobStatus.FAILED,
        attributes={"error_code": ErrorCode.FAL_UNAVAILABLE, "error_message": "down"},
    )

    jobs.transition("a", JobStatus.COMPLETED, reopen_failed_submit=True, current=jobs.get("a"))

    shop = progress(tables)
    assert (shop.open_jobs, shop.statuses["FAILED"], shop.statuses["COMPLETED"]) == (0, 0, 1)
    assert shop.failures == {}


def test_a_redriven_job_and_an_operators_cancel_are_counted(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    upload(jobs, "a")
    dispatch(tables, "a", submitted=False)  # fal never answered the submit
    jobs.transition(
        "a",
        JobStatus.FAILED,
        attributes={"error_code": ErrorCode.FAL_UNAVAILABLE, "error_message": "down"},
    )
    assert progress(tables).open_jobs == 0

    upload(jobs, "a")  # the dead-lettered message, re-driven: it waits again
    assert (progress(tables).open_jobs, progress(tables).statuses["FAILED"]) == (1, 0)
    assert where(tables) == (1, 0, 1)

    jobs.cancel_waiting("a", by="ops", message="not wanted")
    shop = progress(tables)
    assert (shop.jobs, shop.open_jobs, shop.statuses["CANCELLED"]) == (1, 0, 1)
    assert shop.failures == {"cancelled": 1}
    assert where(tables) == (0, 0, 0)


def test_a_batch_is_finished_when_nothing_is_open_and_no_upload_came_for_the_quiet_time() -> None:
    def batch(**item: Any) -> BatchProgress:
        return BatchProgress.from_item(
            {"pk": "progress#shop", "summary_due": "due", "last_upload_at": UPLOAD_AT} | item
        )

    quiet_over = UPLOAD_EPOCH + QUIET
    assert batch(open_jobs=0).is_finished(now_epoch=quiet_over, quiet_seconds=QUIET)
    assert not batch(open_jobs=0).is_finished(now_epoch=quiet_over - 1, quiet_seconds=QUIET)
    assert not batch(open_jobs=1).is_finished(now_epoch=quiet_over, quiet_seconds=QUIET)
    # Summarised already, and no upload since.
    assert not BatchProgress.from_item(
        {"pk": "progress#shop", "open_jobs": 0, "last_upload_at": UPLOAD_AT}
    ).is_finished(now_epoch=quiet_over, quiet_seconds=QUIET)


class RecordedEvents(JobEvents):
    def __init__(self) -> None:
        self.summaries: list[dict[str, Any]] = []

    def batch_completed(self, summary: dict[str, Any]) -> bool:
        self.summaries.append(summary)
        return True


def test_a_finished_batch_is_announced_once_and_again_after_a_later_upload(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    events = RecordedEvents()
    clock = [UPLOAD_EPOCH]
    announcer = BatchAnnouncer(
        control=lambda: tables[1], events=events, quiet_seconds=QUIET, clock=lambda: clock[0]
    )
    upload(jobs, "a")
    upload(jobs, "b")
    dispatch(tables, "a")
    jobs.transition("a", JobStatus.COMPLETED)
    clock[0] += QUIET * 2
    assert announcer.announce_finished() == 0  # b still waits

    jobs.transition("b", JobStatus.CANCELLED, attributes={"error_code": ErrorCode.CANCELLED})
    assert announcer.announce_finished() == 1
    assert announcer.announce_finished() == 0  # never twice

    (summary,) = events.summaries
    assert summary["batch"] == "shop"
    assert summary["counts"] == {"COMPLETED": 1, "CANCELLED": 1}
    assert summary["failures"] == {"cancelled": 1}
    assert summary["spent_usd"] == "0.2"
    assert summary["first_upload_at"] == summary["last_upload_at"] == UPLOAD_AT
    assert summary["summary"] == 1

    later = "2026-12-04T10:05:00.000+00:00"
    upload(jobs, "c", at=later)
    jobs.transition("c", JobStatus.CANCELLED, attributes={"error_code": ErrorCode.CANCELLED})
    assert announcer.announce_finished() == 0  # quiet since the later upload? not yet
    clock[0] = UPLOAD_EPOCH + 300 + QUIET
    assert announcer.announce_finished() == 1
    second = events.summaries[-1]
    assert second["summary"] == 2
    assert second["counts"] == {"COMPLETED": 1, "CANCELLED": 2}
    assert (second["first_upload_at"], second["last_upload_at"]) == (UPLOAD_AT, later)


def test_a_batch_summary_becomes_a_batch_completed_webhook() -> None:
    summary = {"batch": "shop", "counts": {"COMPLETED": 2}, "failures": {}, "summary": 1}
    message = webhook_message(
        {
            "id": "e-1",
            "source": SOURCE,
            "detail-type": BATCH_COMPLETED,
            "time": "2026-12-04T10:10:00Z",
            "detail": summary,
        },
        presign=lambda bucket, key: "unused",
    )
    assert message.type == "batch.completed"
    assert message.callback_url is None
    assert b'"data":{"batch":"shop"' in message.body


def test_counters_do_not_drift_when_many_jobs_of_one_batch_end_at_once(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    ids = [f"f{n:02x}" for n in range(12)]
    for job_id in ids:
        upload(jobs, job_id)
        dispatch(tables, job_id)
    seen = {job_id: jobs.get(job_id) for job_id in ids}
    # Every job delivered twice (fal retries), interleaved: each ends once.
    ended = 0
    for job_id in ids + ids:
        try:
            jobs.transition(job_id, JobStatus.COMPLETED, current=seen[job_id])
            ended += 1
        except JobConflict:
            pass
    assert ended == len(ids)
    shop = progress(tables)
    assert (shop.jobs, shop.open_jobs, shop.statuses["COMPLETED"]) == (12, 0, 12)
    assert (shop.queued, shop.at_fal) == (0, 0)


def test_a_refund_after_the_job_ended_gives_the_batch_its_spend_back(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    upload(jobs, "a")
    dispatch(tables, "a")
    tables[0].update_item(
        Key={"job_id": "a"},
        UpdateExpression="SET reserved_day = :d, reserved_month = :m",
        ExpressionAttributeValues={":d": "2026-12-04", ":m": "2026-12"},
    )
    jobs.transition("a", JobStatus.FAILED, attributes={"error_code": ErrorCode.FAL_ERROR})
    assert progress(tables).spent_usd == Decimal("0.2")

    ledger = SpendLedger(control=lambda: tables[1], jobs=lambda: tables[0])
    assert ledger.refund("a", reason="fal server error") == Decimal("0.2")
    assert ledger.refund("a", reason="again") is None  # once

    assert progress(tables).spent_usd == 0


def test_batches_still_running_do_not_hold_back_a_finished_one_behind_them(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    events = RecordedEvents()
    announcer = BatchAnnouncer(
        control=lambda: tables[1],
        events=events,
        quiet_seconds=QUIET,
        clock=lambda: UPLOAD_EPOCH + 600,
        limit=1,
        pages=3,
    )
    # Two older batches still running, then a finished one: a page of one each.
    upload(jobs, "old-1", batch="old-1", at="2026-12-04T09:58:00.000+00:00")
    upload(jobs, "old-2", batch="old-2", at="2026-12-04T09:59:00.000+00:00")
    upload(jobs, "done", batch="done")
    jobs.transition("done", JobStatus.CANCELLED, attributes={"error_code": ErrorCode.CANCELLED})

    assert announcer.announce_finished() == 1
    assert [summary["batch"] for summary in events.summaries] == ["done"]


class Crashed(Exception):
    """The reconciler dying between the lease and the publish (killed, timed out)."""


class ScriptedEvents(JobEvents):
    """Publishes (records) a summary, after ``during`` runs, or fails or crashes instead."""

    def __init__(self, *, answers: list[str] | None = None) -> None:
        self.summaries: list[dict[str, Any]] = []
        self.answers = answers or []
        self.during: Callable[[], None] = lambda: None

    def batch_completed(self, summary: dict[str, Any]) -> bool:
        answer = self.answers.pop(0) if self.answers else "published"
        if answer == "crash":
            raise Crashed
        if answer == "failed":
            return False
        self.during()
        self.summaries.append(summary)
        return True


def finished_batch(jobs: JobRepository, job_id: str = "a", *, at: str = UPLOAD_AT) -> None:
    upload(jobs, job_id, at=at)
    jobs.transition(job_id, JobStatus.CANCELLED, attributes={"error_code": ErrorCode.CANCELLED})


def test_a_summary_whose_run_crashed_is_announced_with_its_number_once_the_lease_ends(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    clock = [UPLOAD_EPOCH + QUIET]
    events = ScriptedEvents(answers=["crash"])
    announcer = BatchAnnouncer(
        control=lambda: tables[1],
        events=events,
        quiet_seconds=QUIET,
        clock=lambda: clock[0],
        lease_seconds=300,
    )
    finished_batch(jobs)

    with pytest.raises(Crashed):
        announcer.announce_finished()
    assert progress(tables).summary_due  # not lost: still due
    assert progress(tables).being_announced(now_epoch=clock[0] + 299) == 1
    assert progress(tables).being_announced(now_epoch=clock[0] + 301) is None

    clock[0] += 299
    assert announcer.announce_finished() == 0  # the crashed run's lease still holds it
    clock[0] += 2
    assert announcer.announce_finished() == 1
    assert announcer.announce_finished() == 0

    (summary,) = events.summaries
    assert (summary["batch"], summary["summary"]) == ("shop", 1)
    shop = progress(tables)
    assert (shop.summary_due, shop.summaries) == (False, 1)


def test_while_one_run_publishes_a_second_run_announces_nothing(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    events = ScriptedEvents()
    first, second = (
        BatchAnnouncer(
            control=lambda: tables[1],
            events=events,
            quiet_seconds=QUIET,
            clock=lambda: UPLOAD_EPOCH + QUIET,
        )
        for _ in range(2)
    )
    finished_batch(jobs)
    second_run: list[int] = []
    shown: list[int | None] = []

    def meanwhile() -> None:
        shown.append(progress(tables).being_announced(now_epoch=UPLOAD_EPOCH + QUIET))
        second_run.append(second.announce_finished())

    events.during = meanwhile

    assert first.announce_finished() == 1

    assert shown == [1]  # `pika-pipeline batch`: "Summary 1 being announced"
    assert progress(tables).being_announced(now_epoch=UPLOAD_EPOCH + QUIET) is None
    assert second_run == [0]
    assert [summary["summary"] for summary in events.summaries] == [1]
    assert second.announce_finished() == 0  # settled: not due any more


def test_an_upload_while_a_summary_is_published_makes_the_batch_due_for_the_next(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    clock = [UPLOAD_EPOCH + QUIET]
    events = ScriptedEvents()
    announcer = BatchAnnouncer(
        control=lambda: tables[1], events=events, quiet_seconds=QUIET, clock=lambda: clock[0]
    )
    finished_batch(jobs)
    later = "2026-12-04T10:01:00.000+00:00"  # UPLOAD_EPOCH + 60
    events.during = lambda: upload(jobs, "b", at=later)

    assert announcer.announce_finished() == 1
    events.during = lambda: None
    shop = progress(tables)
    assert (shop.summary_due, shop.summaries) == (True, 1)

    jobs.transition("b", JobStatus.CANCELLED, attributes={"error_code": ErrorCode.CANCELLED})
    clock[0] = UPLOAD_EPOCH + 60 + QUIET
    assert announcer.announce_finished() == 1
    assert [(s["summary"], s["jobs"]) for s in events.summaries] == [(1, 1), (2, 2)]
    assert not progress(tables).summary_due


def test_a_job_reopened_while_a_summary_is_published_makes_the_batch_due_again(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    events = ScriptedEvents()
    announcer = BatchAnnouncer(
        control=lambda: tables[1],
        events=events,
        quiet_seconds=QUIET,
        clock=lambda: UPLOAD_EPOCH + QUIET,
    )
    upload(jobs, "a")
    dispatch(tables, "a", submitted=False)
    jobs.transition("a", JobStatus.FAILED, attributes={"error_code": ErrorCode.FAL_UNAVAILABLE})
    # The dead-lettered message re-driven meanwhile: the job waits again (same upload time).
    events.during = lambda: upload(jobs, "a")

    assert announcer.announce_finished() == 1

    shop = progress(tables)
    assert (shop.summary_due, shop.open_jobs, shop.summaries) == (True, 1, 1)


def test_a_failed_publish_lets_the_next_run_announce_the_same_summary_at_once(
    jobs: JobRepository, tables: tuple[Any, Any]
) -> None:
    events = ScriptedEvents(answers=["failed"])
    announcer = BatchAnnouncer(
        control=lambda: tables[1],
        events=events,
        quiet_seconds=QUIET,
        clock=lambda: UPLOAD_EPOCH + QUIET,  # the same instant: no lease to wait for
    )
    finished_batch(jobs)

    assert announcer.announce_finished() == 0
    assert announcer.announce_finished() == 1

    assert [summary["summary"] for summary in events.summaries] == [1]
    assert progress(tables).summaries == 1
