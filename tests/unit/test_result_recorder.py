"""Recording fal's result for a job: an OK result stores the video and completes the job, an
ERROR fails it with fal's reason, and whatever comes second changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pika_pipeline.errors import VideoUnavailable
from pika_pipeline.fal.delivery import FalDelivery
from pika_pipeline.jobs.job import Job
from pika_pipeline.observability import Metric
from pika_pipeline.results.recorder import RecordOutcome
from tests.unit.fakes import (
    OUTPUT_PREFIX,
    EmittedMetrics,
    FakeJobs,
    FakeVideoStore,
    RecordedEvents,
    recorder_with,
)

JOB_ID = "0123456789abcdef0123456789abcdef"
SUBMITTED_AT = datetime(2026, 12, 2, 6, 0, 0, tzinfo=UTC)
NOW = SUBMITTED_AT.timestamp() + 42.5
VIDEO_URL = "https://v3.fal.media/files/out.mp4"
READABLE_KEY = f"{OUTPUT_PREFIX}incoming/cat.mp4"  # of the source key incoming/cat.png


@pytest.fixture(autouse=True)
def emitted() -> EmittedMetrics:
    return EmittedMetrics()


def job_without_request(**overrides: Any) -> dict[str, Any]:
    """A job that never learned a fal request id (a lost answer, a crashed submit)."""
    return {
        "job_id": JOB_ID,
        "status": "PENDING",
        "source_bucket": "uploads",
        "source_key": "incoming/cat.png",
        "open_shard": "open-0",
        "next_check_at": 0,
        **overrides,
    }


def submitted_job(**overrides: Any) -> dict[str, Any]:
    submitted = {
        "status": "SUBMITTED",
        "request_id": "req-1",
        "request_ids": {"req-1"},
        "submitted_at": SUBMITTED_AT.isoformat(),
    }
    return job_without_request(**(submitted | overrides))


def ok(request_id: str = "req-1", size: int = 2048) -> FalDelivery:
    return FalDelivery(
        request_id=request_id,
        status="OK",
        payload={
            "video": {"url": f"https://v3.fal.media/files/{request_id}.mp4", "file_size": size}
        },
    )


class World:
    """The jobs table, the output bucket and the event bus the recorder writes to."""

    def __init__(self, *items: dict[str, Any]) -> None:
        self.jobs = FakeJobs(*items)
        self.store = FakeVideoStore()
        self.events = RecordedEvents()
        self.recorder = recorder_with(self.jobs, self.store, self.events, clock=lambda: NOW)

    def job(self) -> dict[str, Any]:
        return self.jobs.items[JOB_ID]

    def record(
        self,
        delivery: FalDelivery,
        *,
        seen: Job | None = None,
        unanswered_attempt: str | None = None,
    ) -> RecordOutcome:
        job = seen or self.jobs.get(JOB_ID)
        assert job is not None
        return self.recorder.record(job, delivery, unanswered_attempt=unanswered_attempt)


def test_an_ok_result_stores_the_video_and_completes_the_job(emitted: EmittedMetrics) -> None:
    world = World(submitted_job())

    outcome = world.record(ok("req-1", size=2048))

    key = READABLE_KEY  # the upload's own name, under the output prefix
    assert outcome is RecordOutcome.COMPLETED
    assert world.store.objects == {key: "https://v3.fal.media/files/req-1.mp4"}
    job = world.job()
    assert (job["status"], job["output_key"], job["video_bytes"]) == ("COMPLETED", key, 2048)
    assert job["completed_request_id"] == "req-1"
    assert float(job["generation_seconds"]) == 42.5
    assert "open_shard" not in job  # out of the reconciler's index
    assert world.events.statuses == ["COMPLETED"]
    assert emitted.values(Metric.VIDEOS_COMPLETED) == [1.0]
    assert emitted.values(Metric.VIDEO_BYTES) == [2048.0]
    assert emitted.values(Metric.GENERATION_SECONDS) == [42.5]


def test_an_error_result_fails_the_job_with_fals_reason(emitted: EmittedMetrics) -> None:
    world = World(submitted_job())
    delivery = FalDelivery(
        request_id="req-1",
        status="ERROR",
        error="Invalid status code: 422",
        payload={"detail": [{"loc": ["body", "image_url"], "msg": "cannot fetch the image"}]},
    )

    outcome = world.record(delivery)

    assert outcome is RecordOutcome.FAILED
    job = world.job()
    assert (job["status"], job["error_code"]) == ("FAILED", "fal_validation")
    assert job["error_message"] == "image_url: cannot fetch the image"
    assert world.store.objects == {}
    assert world.events.statuses == ["FAILED"]
    assert emitted.values(Metric.VIDEOS_FAILED) == [1.0]


def test_a_second_delivery_of_the_same_result_changes_nothing(emitted: EmittedMetrics) -> None:
    world = World(submitted_job())
    world.record(ok("req-1"))
    before = dict(world.job())

    outcome = world.record(ok("req-1"))

    assert outcome is RecordOutcome.DUPLICATE
    assert world.job() == before
    assert len(world.store.objects) == 1
    assert world.events.statuses == ["COMPLETED"]  # announced once
    assert emitted.values(Metric.DUPLICATE_DELIVERIES) == [1.0]


def test_a_finished_job_is_never_changed_by_a_late_result() -> None:
    world = World(submitted_job(status="EXPIRED", error_code="fal_deadline"))

    outcome = world.record(ok("req-1"))

    assert outcome is RecordOutcome.DUPLICATE
    assert (world.job()["status"], world.job()["error_code"]) == ("EXPIRED", "fal_deadline")
    assert world.store.objects == {}
    assert world.events.published == []


def test_losing_the_race_to_another_requests_result_deletes_the_extra_copy() -> None:
    # The job was read while SUBMITTED; meanwhile the result of another request of the same job
    # (a lost call's) completed it. Both copies landed under their own keys.
    winner_key = f"{OUTPUT_PREFIX}{JOB_ID}/req-0.mp4"
    world = World(submitted_job())
    seen = world.jobs.get(JOB_ID)
    world.jobs.items[JOB_ID].update(status="COMPLETED", output_key=winner_key)
    world.store.objects[winner_key] = "https://v3.fal.media/files/req-0.mp4"

    outcome = world.record(ok("req-1"), seen=seen)

    assert outcome is RecordOutcome.DUPLICATE
    assert world.store.objects == {winner_key: "https://v3.fal.media/files/req-0.mp4"}
    assert world.job()["output_key"] == winner_key
    assert world.events.published == []


def test_losing_the_race_to_the_same_result_keeps_the_one_copy() -> None:
    # Two deliveries of one request wrote the same key: the copy is the winner's video.
    key = READABLE_KEY
    world = World(submitted_job())
    seen = world.jobs.get(JOB_ID)
    world.jobs.items[JOB_ID].update(status="COMPLETED", output_key=key)

    outcome = world.record(ok("req-1"), seen=seen)

    assert outcome is RecordOutcome.DUPLICATE
    assert list(world.store.objects) == [key]


def test_a_result_for_a_call_whose_answer_was_lost_books_its_request_and_closes_the_attempt() -> (
    None
):
    world = World(job_without_request(open_attempts={"attempt-1"}))

    outcome = world.record(ok("req-9"), unanswered_attempt="attempt-1")

    assert outcome is RecordOutcome.COMPLETED
    job = world.job()
    assert (job["status"], job["request_id"], job["request_ids"]) == (
        "COMPLETED",
        "req-9",
        {"req-9"},
    )
    assert job["open_attempts"] == set()
    assert "generation_seconds" not in job  # never learned when fal started


def test_a_result_whose_attempt_was_answered_meanwhile_completes_the_job_with_its_video() -> None:
    # The delivery read the job before the submit recorded fal's answer (the same request): its
    # attempt is closed by the time it records. The job is not finished, so the video it stored
    # at the readable key (which a duplicate delivery may already have found and kept as the
    # job's own) is the job's: it completes the job and is never deleted.
    seen = Job(job_without_request(open_attempts={"attempt-1"}))
    world = World(submitted_job(request_id="req-9", request_ids={"req-9"}, open_attempts=set()))

    outcome = world.record(ok("req-9"), seen=seen, unanswered_attempt="attempt-1")

    assert outcome is RecordOutcome.COMPLETED
    job = world.job()
    assert (job["status"], job["output_key"]) == ("COMPLETED", READABLE_KEY)
    assert READABLE_KEY in world.store.objects


def test_a_second_paid_result_for_a_finished_job_is_booked_but_not_kept(
    emitted: EmittedMetrics,
) -> None:
    world = World(
        submitted_job(status="COMPLETED", output_key="videos/first.mp4", open_attempts={"a-2"})
    )

    outcome = world.record(ok("req-2"), unanswered_attempt="a-2")

    assert outcome is RecordOutcome.DUPLICATE
    job = world.job()
    assert (job["status"], job["output_key"]) == ("COMPLETED", "videos/first.mp4")
    assert job["request_ids"] == {"req-1", "req-2"}  # the spend is accounted for
    assert job["open_attempts"] == set()
    assert world.store.objects == {}
    assert emitted.values(Metric.EXTRA_FAL_RESULTS) == [1.0]


def test_a_failure_of_a_request_the_job_no_longer_waits_on_leaves_the_job_waiting() -> None:
    # req-1 is the request the job waits on; req-0 was the call whose answer was lost (or an
    # extra cancelled at fal): its failure must not end a job whose own request may still succeed.
    world = World(submitted_job(open_attempts={"a-0"}))
    failure = FalDelivery(request_id="req-0", status="ERROR", error="Invalid status code: 500")

    outcome = world.record(failure, unanswered_attempt="a-0")

    assert outcome is RecordOutcome.DUPLICATE
    job = world.job()
    assert (job["status"], job["request_id"]) == ("SUBMITTED", "req-1")
    assert job["request_ids"] == {"req-0", "req-1"}  # booked: fal may have charged it
    assert world.events.statuses == []
    assert world.record(ok("req-1")) is RecordOutcome.COMPLETED


def test_an_attempt_answered_meanwhile_is_not_booked_twice(emitted: EmittedMetrics) -> None:
    world = World(submitted_job(status="COMPLETED", output_key="videos/first.mp4"))

    outcome = world.record(ok("req-2"), unanswered_attempt="a-2")

    assert outcome is RecordOutcome.DUPLICATE
    assert world.job()["request_ids"] == {"req-1"}
    assert emitted.values(Metric.EXTRA_FAL_RESULTS) == []


def test_a_result_still_completes_a_job_the_submit_path_gave_up_on() -> None:
    # fal stayed unavailable for every attempt, yet one call had reached fal.
    world = World(
        job_without_request(
            status="FAILED",
            error_code="fal_unavailable",
            error_message="fal did not answer (after every attempt)",
            open_attempts={"a-1"},
        )
    )

    outcome = world.record(ok("req-7"), unanswered_attempt="a-1")

    assert outcome is RecordOutcome.COMPLETED
    job = world.job()
    assert job["status"] == "COMPLETED"
    assert "error_code" not in job
    assert "error_message" not in job
    assert world.events.statuses == ["COMPLETED"]


def test_a_video_that_cannot_be_fetched_leaves_the_job_for_fals_retry() -> None:
    world = World(submitted_job())
    world.store.unavailable.add("https://v3.fal.media/files/req-1.mp4")

    with pytest.raises(VideoUnavailable):
        world.record(ok("req-1"))

    assert world.job()["status"] == "SUBMITTED"
    assert world.store.objects == {}
    assert world.events.published == []
