"""The outbox of job events: every write that ends a job marks its event as owed, the notifier's
acknowledgement removes the mark, and the reconciler publishes again what stays marked past the
grace. Against moto in-process, with the template's tables."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from moto import mock_aws

from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.event_outbox import EventOutbox, event_shard
from pika_pipeline.jobs.open_jobs import open_shard
from pika_pipeline.jobs.repository import JobRepository
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.notify.notifier import Notifier
from pika_pipeline.observability import Metric
from pika_pipeline.reconcile.reconciler import MAX_REPUBLISHES, Reconciler
from pika_pipeline.submit.service import SubmitOutcome
from tests.unit.fakes import (
    EmittedMetrics,
    FakeJobs,
    FakeOpenJobs,
    FakeSubmit,
    FakeVideoStore,
    RecordedEvents,
    recorder_with,
)
from tests.unit.moto_tables import offline_aws, template_table

if TYPE_CHECKING:
    from pika_pipeline.jobs.events import JobEvents
    from pika_pipeline.jobs.open_jobs import OpenJobs
    from pika_pipeline.notify.delivery import WebhookSender
    from pika_pipeline.submit.service import SubmitService

JOB_ID = "0123456789abcdef0123456789abcdef"
OTHER_ID = "fedcba9876543210fedcba9876543210"
GRACE = 600


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    offline_aws(monkeypatch)


@pytest.fixture
def tables() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb")
        yield template_table(dynamodb, "JobsTable"), template_table(dynamodb, "ControlTable")


@pytest.fixture
def table(tables: tuple[Any, Any]) -> Any:
    return tables[0]


@pytest.fixture
def outbox(table: Any) -> EventOutbox:
    return EventOutbox(lambda: table)


def stored(table: Any, job_id: str = JOB_ID) -> dict[str, Any]:
    item: dict[str, Any] = table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
    return item


def at_fal(table: Any, *, status: JobStatus = JobStatus.SUBMITTED, **more: Any) -> None:
    table.put_item(
        Item={
            "job_id": JOB_ID,
            "status": str(status),
            "open_shard": open_shard(JOB_ID),
            "next_check_at": 0,
            **more,
        }
    )


def queued(jobs: JobRepository, *, batch: str | None = None) -> None:
    item = {"job_id": JOB_ID, "source_bucket": "in", "source_key": "uploads/cat.png"}
    jobs.enqueue(
        item | ({"batch": batch} if batch else {}),
        lane="normal",
        order="000000000001#t0#" + JOB_ID,
        queued_at="2026-12-04T10:00:00.000+00:00",
    )


def _result(tables: tuple[Any, Any]) -> None:
    at_fal(tables[0])
    JobRepository(lambda: tables[0]).transition(
        JOB_ID, JobStatus.COMPLETED, attributes={"output_key": "videos/cat.mp4"}
    )


def _counted_failure(tables: tuple[Any, Any]) -> None:
    """A job created with its batch's counters: its end is a transaction with them."""
    jobs = JobRepository(lambda: tables[0], control=lambda: tables[1])
    queued(jobs, batch="shop")
    tables[0].update_item(
        Key={"job_id": JOB_ID},
        UpdateExpression="SET #s = :submitted",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":submitted": "SUBMITTED"},
    )
    jobs.transition(JOB_ID, JobStatus.FAILED, attributes={"error_code": ErrorCode.FAL_VALIDATION})


def _rejection(tables: tuple[Any, Any]) -> None:
    JobRepository(lambda: tables[0]).record_rejection(
        {"job_id": JOB_ID, "error_code": ErrorCode.UNSUPPORTED_IMAGE_TYPE, "error_message": "no"}
    )


def _counted_rejection(tables: tuple[Any, Any]) -> None:
    JobRepository(lambda: tables[0], control=lambda: tables[1]).record_rejection(
        {"job_id": JOB_ID, "batch": "shop", "error_code": ErrorCode.UNSUPPORTED_IMAGE_TYPE}
    )


def _stranded_claim(tables: tuple[Any, Any]) -> None:
    at_fal(tables[0], status=JobStatus.PENDING, claim_expires_at=int(time.time()) - 10)
    JobRepository(lambda: tables[0]).reject_stranded(
        JOB_ID, now_epoch=int(time.time()), code=ErrorCode.OUTSIDE_INPUT_PREFIX, message="moved"
    )


def _cancelled_while_waiting(tables: tuple[Any, Any]) -> None:
    jobs = JobRepository(lambda: tables[0], control=lambda: tables[1])
    queued(jobs, batch="shop")
    jobs.cancel_waiting(JOB_ID, by="ops", message="not needed")


@pytest.mark.parametrize(
    "finish",
    [
        _result,
        _counted_failure,
        _rejection,
        _counted_rejection,
        _stranded_claim,
        _cancelled_while_waiting,
    ],
)
def test_every_write_that_ends_a_job_marks_its_event_as_owed(
    tables: tuple[Any, Any], outbox: EventOutbox, finish: Callable[[tuple[Any, Any]], None]
) -> None:
    before = int(time.time())
    finish(tables)
    after = int(time.time())

    item = stored(tables[0])
    assert item["event_due"] == event_shard(JOB_ID)
    assert before <= item["event_due_at"] <= after
    assert [job.job_id for job in outbox.due(before_epoch=after, limit=10)] == [JOB_ID]
    assert outbox.due(before_epoch=before - 1, limit=10) == []


def test_a_job_still_at_fal_owes_no_event(table: Any, outbox: EventOutbox) -> None:
    at_fal(table, status=JobStatus.PENDING)

    JobRepository(lambda: table).record_request_id(JOB_ID, "req-1", attempt="a1")

    assert stored(table)["status"] == "SUBMITTED"
    assert "event_due" not in stored(table)
    assert outbox.due(before_epoch=int(time.time()) + GRACE, limit=10) == []


def test_a_failed_job_put_back_in_the_queue_owes_its_failure_event_no_more(
    table: Any, outbox: EventOutbox
) -> None:
    jobs = JobRepository(lambda: table)
    at_fal(table, status=JobStatus.PENDING)
    jobs.transition(JOB_ID, JobStatus.FAILED, attributes={"error_code": ErrorCode.FAL_UNAVAILABLE})
    assert "event_due" in stored(table)

    queued(jobs)  # its dead-lettered message re-driven

    assert stored(table)["status"] == "QUEUED"
    assert {"event_due", "event_due_at"} & stored(table).keys() == set()


def test_the_acknowledgement_removes_the_mark_of_the_status_the_event_announced(
    table: Any, outbox: EventOutbox
) -> None:
    at_fal(table)
    JobRepository(lambda: table).transition(JOB_ID, JobStatus.COMPLETED)

    # An older event (the job failed, then a late result completed it) leaves the new mark.
    assert outbox.acknowledge(JOB_ID, "FAILED") is False
    assert "event_due" in stored(table)
    assert outbox.acknowledge(JOB_ID, "COMPLETED") is True
    assert {"event_due", "event_due_at"} & stored(table).keys() == set()
    assert outbox.acknowledge(JOB_ID, "COMPLETED") is False  # a second copy of the event


class _NoSender:
    def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> Any:
        raise AssertionError(f"nothing should be posted (to {url})")


def test_the_notifier_acknowledges_a_job_event_even_with_nobody_to_notify(
    table: Any, outbox: EventOutbox
) -> None:
    at_fal(table)
    JobRepository(lambda: table).transition(JOB_ID, JobStatus.COMPLETED)
    notifier = Notifier(
        sqs=cast("Any", None),
        sender=cast("WebhookSender", _NoSender()),
        secret=lambda: "unused",
        presign=lambda bucket, key: "https://unused",
        acknowledge=outbox.acknowledge,
        notify_url="",
        retry_delays=(1,),
        max_attempts=3,
        now=lambda: cast("Any", None),
    )
    event = {
        "id": "e-1",
        "source": "pika-pipeline",
        "detail-type": "Video Completed",
        "time": "2026-12-04T10:00:00Z",
        "detail": {"job_id": JOB_ID, "status": "COMPLETED"},
    }

    answer = notifier.handle({"Records": [{"messageId": "m-1", "body": json.dumps(event)}]})

    assert answer == {"batchItemFailures": []}
    assert "event_due" not in stored(table)


# --- the reconciler ------------------------------------------------------------------------------


def finished(table: Any, job_id: str, *, due_at: int, republished: int = 0) -> None:
    """A final job as its last write left it: owing its event since ``due_at``."""
    item: dict[str, Any] = {
        "job_id": job_id,
        "status": "COMPLETED",
        "output_bucket": "videos",
        "output_key": f"videos/{job_id}.mp4",
        "event_due": event_shard(job_id),
        "event_due_at": due_at,
    }
    if republished:
        item["event_republished"] = republished
    table.put_item(Item=item)


class Republishing:
    def __init__(self, table: Any, now: int) -> None:
        self.clock = [now]
        self.events = RecordedEvents()
        nothing_open = FakeJobs()
        self.reconciler = Reconciler(
            open_jobs=cast("OpenJobs", FakeOpenJobs(nothing_open)),
            repository=JobRepository(lambda: table),
            fal=lambda: cast("Any", None),
            recorder=recorder_with(
                nothing_open, FakeVideoStore(), self.events, clock=lambda: self.clock[0]
            ),
            submit=cast("SubmitService", FakeSubmit(SubmitOutcome.SUBMITTED)),
            events=cast("JobEvents", self.events),
            reconcile_after_seconds=60,
            job_deadline_seconds=600,
            outbox=EventOutbox(lambda: table),
            event_grace_seconds=GRACE,
            clock=lambda: self.clock[0],
        )

    def run(self, at: int) -> list[str]:
        """Runs the reconciler at ``at``; the jobs whose event it published."""
        self.clock[0] = at
        self.events.published.clear()
        self.reconciler.run(reconcile_batch_size=10)
        return [str(item["job_id"]) for item in self.events.published]


def test_the_reconciler_republishes_only_marks_past_the_grace_and_waits_longer_each_time(
    table: Any,
) -> None:
    emitted = EmittedMetrics()
    now = int(time.time())
    finished(table, JOB_ID, due_at=now - GRACE)  # lost: owed for the whole grace
    finished(table, OTHER_ID, due_at=now - GRACE + 5)  # the notifier may still take it
    reconciler = Republishing(table, now)

    assert reconciler.run(now) == [JOB_ID]
    assert reconciler.events.published[0]["output_key"] == f"videos/{JOB_ID}.mp4"
    assert stored(table)["event_republished"] == 1
    assert stored(table)["event_due_at"] == now + GRACE  # due again 2 x GRACE from now
    assert emitted.values(Metric.EVENTS_REPUBLISHED) == [1]

    assert reconciler.run(now + 2 * GRACE - 1) == [OTHER_ID]
    assert reconciler.run(now + 2 * GRACE) == [JOB_ID]
    assert stored(table)["event_republished"] == 2
    assert stored(table)["event_due_at"] == now + 2 * GRACE + 3 * GRACE  # then 4 x GRACE


def test_an_acknowledged_event_is_not_republished(table: Any, outbox: EventOutbox) -> None:
    now = int(time.time())
    finished(table, JOB_ID, due_at=now - GRACE)
    outbox.acknowledge(JOB_ID, "COMPLETED")

    assert Republishing(table, now).run(now) == []


def test_a_republish_eventbridge_refuses_comes_back_after_its_delay(table: Any) -> None:
    now = int(time.time())
    finished(table, JOB_ID, due_at=now - GRACE)
    reconciler = Republishing(table, now)
    reconciler.events.refuse = 1

    assert reconciler.run(now) == []
    assert reconciler.run(now + 2 * GRACE) == [JOB_ID]


def test_after_the_last_republish_the_mark_goes_and_the_loss_is_counted(table: Any) -> None:
    emitted = EmittedMetrics()
    now = int(time.time())
    finished(table, JOB_ID, due_at=now - GRACE, republished=MAX_REPUBLISHES)

    assert Republishing(table, now).run(now) == []
    assert {"event_due", "event_due_at", "event_republished"} & stored(table).keys() == set()
    assert emitted.values(Metric.EVENTS_NEVER_ACKNOWLEDGED) == [1]
