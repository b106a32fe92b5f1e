"""Where a completed job's video ends: at its upload's readable key, unless a newer upload of
that key holds it; whatever order fal finishes them in, every completed job keeps exactly one
video object and no staging copy is left behind."""

from __future__ import annotations

from typing import Any

import pytest

from pika_pipeline.errors import VideoUnavailable
from pika_pipeline.fal.delivery import FalDelivery
from pika_pipeline.results.recorder import RecordOutcome, video_metadata
from tests.unit.fakes import (
    OUTPUT_PREFIX,
    FakeJobs,
    FakeVideoStore,
    RecordedEvents,
    recorder_with,
)

OLDER = "a" * 32
NEWER = "b" * 32
SOURCE_KEY = "uploads/shop/spring/sku 123.png"
READABLE = f"{OUTPUT_PREFIX}shop/spring/sku 123.mp4"


def submitted(job_id: str, *, request_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "status": "SUBMITTED",
        "source_bucket": "uploads",
        "source_key": SOURCE_KEY,
        "request_id": request_id,
        "request_ids": {request_id},
        **overrides,
    }


def ok(request_id: str) -> FalDelivery:
    return FalDelivery(
        request_id=request_id,
        status="OK",
        payload={"video": {"url": f"https://v3.fal.media/files/{request_id}.mp4"}},
    )


class World:
    def __init__(self, *items: dict[str, Any]) -> None:
        self.jobs = FakeJobs(*items)
        self.store = FakeVideoStore()
        self.events = RecordedEvents()
        self.recorder = recorder_with(self.jobs, self.store, self.events, clock=lambda: 0.0)

    def finish(self, job_id: str, request_id: str) -> RecordOutcome:
        job = self.jobs.get(job_id)
        assert job is not None
        return self.recorder.record(job, ok(request_id))

    def video_of(self, key: str) -> str:
        """Which fal request's video is at ``key``."""
        return self.store.objects[key].rsplit("/", 1)[-1].removesuffix(".mp4")

    def assert_one_video_per_completed_job(self) -> None:
        """The rule `make chaos` checks: each COMPLETED job's output_key holds an object that
        carries its job id, and no other object carries it."""
        for job_id, item in self.jobs.items.items():
            if item["status"] != "COMPLETED":
                continue
            carrying = [k for k, m in self.store.metadata.items() if m["job-id"] == job_id]
            assert carrying == [item["output_key"]], (job_id, carrying)


def two_uploads_of_one_key() -> World:
    return World(
        submitted(OLDER, request_id="req-old", created_at="2026-12-01T10:00:00.000+00:00"),
        submitted(NEWER, request_id="req-new", created_at="2026-12-01T10:00:05.000+00:00"),
    )


def test_a_first_upload_is_written_straight_to_its_readable_key() -> None:
    world = World(submitted(OLDER, request_id="req-1", correlation_id="SKU 123"))

    assert world.finish(OLDER, "req-1") is RecordOutcome.COMPLETED

    assert world.jobs.items[OLDER]["output_key"] == READABLE
    assert list(world.store.objects) == [READABLE]
    assert world.store.writes == 1  # no staging copy: the usual case costs one write
    metadata = world.store.metadata[READABLE]
    assert (metadata["job-id"], metadata["correlation-id"]) == (OLDER, "SKU%20123")
    assert world.events.published[0]["output_key"] == READABLE


def test_a_newer_uploads_video_replaces_the_older_one_which_moves_aside() -> None:
    world = two_uploads_of_one_key()
    world.finish(OLDER, "req-old")

    world.finish(NEWER, "req-new")

    assert world.jobs.items[NEWER]["output_key"] == READABLE
    assert world.video_of(READABLE) == "req-new"
    aside = world.jobs.items[OLDER]["output_key"]
    assert aside == f"{OUTPUT_PREFIX}{OLDER}/req-old.mp4"
    assert world.video_of(aside) == "req-old"
    assert sorted(world.store.objects) == sorted([READABLE, aside])
    world.assert_one_video_per_completed_job()


def test_an_older_uploads_video_finishing_last_stays_at_its_own_key() -> None:
    world = two_uploads_of_one_key()
    world.finish(NEWER, "req-new")

    world.finish(OLDER, "req-old")

    assert world.jobs.items[NEWER]["output_key"] == READABLE
    assert world.video_of(READABLE) == "req-new"
    assert world.jobs.items[OLDER]["output_key"] == f"{OUTPUT_PREFIX}{OLDER}/req-old.mp4"
    assert len(world.store.objects) == 2
    world.assert_one_video_per_completed_job()


def test_for_one_key_s3s_sequencer_orders_the_uploads_not_the_time_the_pipeline_saw_them() -> None:
    # The later PUT (greater sequencer) reached the pipeline first.
    world = World(
        submitted(
            OLDER,
            request_id="req-old",
            source_sequencer="0055AED6DCD90281E5",
            created_at="2026-12-01T10:00:05.000+00:00",
        ),
        submitted(
            NEWER,
            request_id="req-new",
            source_sequencer="0055AED6DCD90281E6",
            created_at="2026-12-01T10:00:00.000+00:00",
        ),
    )
    world.finish(NEWER, "req-new")

    world.finish(OLDER, "req-old")

    assert world.video_of(READABLE) == "req-new"
    world.assert_one_video_per_completed_job()


def test_a_newer_upload_waits_while_the_older_one_at_its_key_is_being_recorded() -> None:
    # The older upload's delivery wrote the key and has not recorded its job yet.
    world = two_uploads_of_one_key()
    world.store.copy(
        "https://v3.fal.media/files/req-old.mp4",
        key=READABLE,
        expected_size=None,
        metadata=video_metadata(job_id=OLDER, request_id="req-old", source_key=SOURCE_KEY),
    )

    # fal's retry (or the reconciler) comes back later; nothing of this try is left stored
    with pytest.raises(VideoUnavailable):
        world.finish(NEWER, "req-new")
    assert list(world.store.objects) == [READABLE]
    assert world.jobs.items[NEWER]["status"] == "SUBMITTED"

    # once the older one is recorded (its own retry keeps the video it wrote), the retry wins
    world.finish(OLDER, "req-old")
    world.finish(NEWER, "req-new")
    assert world.video_of(READABLE) == "req-new"
    world.assert_one_video_per_completed_job()


def test_an_older_upload_leaves_the_key_to_a_newer_one_still_being_recorded() -> None:
    world = two_uploads_of_one_key()
    world.store.copy(
        "https://v3.fal.media/files/req-new.mp4",
        key=READABLE,
        expected_size=None,
        metadata=video_metadata(job_id=NEWER, request_id="req-new", source_key=SOURCE_KEY),
    )

    world.finish(OLDER, "req-old")

    assert world.jobs.items[OLDER]["output_key"] == f"{OUTPUT_PREFIX}{OLDER}/req-old.mp4"
    assert world.video_of(READABLE) == "req-new"


def test_a_retry_after_a_try_that_stopped_before_recording_keeps_the_video_already_there() -> None:
    world = World(submitted(OLDER, request_id="req-1"))
    world.store.copy(
        "https://v3.fal.media/files/req-1.mp4",
        key=READABLE,
        expected_size=None,
        metadata=video_metadata(job_id=OLDER, request_id="req-1", source_key=SOURCE_KEY),
    )

    world.finish(OLDER, "req-1")

    job = world.jobs.items[OLDER]
    assert (job["status"], job["output_key"], job["completed_request_id"]) == (
        "COMPLETED",
        READABLE,
        "req-1",
    )
    assert list(world.store.objects) == [READABLE]


def test_a_copy_no_job_record_names_is_replaced() -> None:
    world = World(submitted(NEWER, request_id="req-new"))
    world.store.copy(
        "https://v3.fal.media/files/gone.mp4",
        key=READABLE,
        expected_size=None,
        metadata=video_metadata(job_id="c" * 32, request_id="gone", source_key=SOURCE_KEY),
    )

    world.finish(NEWER, "req-new")

    assert world.jobs.items[NEWER]["output_key"] == READABLE
    assert world.video_of(READABLE) == "req-new"
    assert list(world.store.objects) == [READABLE]
