"""A reconciler run over open jobs: each ends in a final status, or is looked at again later, and
the oldest job it had to leave open is what OldestOpenJobSeconds reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pika_pipeline.errors import FalUnavailable, FalUnavailableKind
from pika_pipeline.fal.delivery import FalDelivery
from pika_pipeline.observability import Metric
from pika_pipeline.submit.service import SubmitOutcome
from pika_pipeline.submit.uploads import Upload
from tests.unit.fakes import (
    EmittedMetrics,
    FakeFal,
    FakeJobs,
    FakeSubmit,
    FakeVideoStore,
    RecordedEvents,
    reconciler_with,
)

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC).timestamp()
AFTER = 60  # ReconcileAfterSeconds
DEADLINE = 600  # JobDeadlineSeconds
OUTAGE = FalUnavailable("fal answered HTTP 503", kind=FalUnavailableKind.SERVER_ERROR)


@pytest.fixture(autouse=True)
def emitted() -> EmittedMetrics:
    return EmittedMetrics()


def _iso(seconds_ago: float) -> str:
    return datetime.fromtimestamp(NOW - seconds_ago, tz=UTC).isoformat(timespec="milliseconds")


def submitted(job_id: str, *, seconds_ago: float, request_id: str = "req-1") -> dict[str, Any]:
    return {
        "job_id": job_id,
        "status": "SUBMITTED",
        "source_bucket": "uploads",
        "source_key": f"incoming/{job_id[:4]}.png",
        "source_version": "seq-1",
        "created_at": _iso(seconds_ago + 1),
        "submitted_at": _iso(seconds_ago),
        "request_id": request_id,
        "request_ids": {request_id},
        "open_shard": "open-0",
        "next_check_at": int(NOW) - 1,
    }


def crashed_claim(job_id: str, *, seconds_ago: float, claim_expires_in: int) -> dict[str, Any]:
    """A PENDING job whose submit never recorded a fal request id."""
    return {
        "job_id": job_id,
        "status": "PENDING",
        "source_bucket": "uploads",
        "source_key": "incoming/cat photo.png",
        "source_version": "seq-7",
        "created_at": _iso(seconds_ago),
        "claim_expires_at": int(NOW) + claim_expires_in,
        "open_attempts": {"a-1"},
        "open_shard": "open-0",
        "next_check_at": int(NOW) - 1,
    }


JOB_A = "a" * 32
JOB_B = "b" * 32
JOB_C = "c" * 32


class World:
    def __init__(
        self,
        *items: dict[str, Any],
        fal: FakeFal | None = None,
        submit: FakeSubmit | None = None,
    ) -> None:
        self.jobs = FakeJobs(*items)
        self.fal = fal or FakeFal()
        self.submit = submit or FakeSubmit(SubmitOutcome.SUBMITTED)
        self.store = FakeVideoStore()
        self.events = RecordedEvents()
        self.reconciler = reconciler_with(
            self.jobs,
            fal=self.fal,
            submit=self.submit,
            store=self.store,
            events=self.events,
            clock=lambda: NOW,
            reconcile_after_seconds=AFTER,
            job_deadline_seconds=DEADLINE,
        )

    def run(
        self, *, reconcile_batch_size: int = 10, stop_after: int | None = None
    ) -> dict[str, int]:
        checks = iter(range(10**6))
        return self.reconciler.run(
            reconcile_batch_size=reconcile_batch_size,
            out_of_time=lambda: stop_after is not None and next(checks) >= stop_after,
        )

    def job(self, job_id: str) -> dict[str, Any]:
        return self.jobs.items[job_id]


def test_a_claim_whose_submit_may_still_be_running_is_left_alone_until_it_runs_out() -> None:
    world = World(crashed_claim(JOB_A, seconds_ago=30, claim_expires_in=90))

    report = world.run()

    assert report == {"claim_still_live": 1}
    assert world.submit.calls == []
    assert world.job(JOB_A)["next_check_at"] == int(NOW) + 90


def test_a_crashed_submit_is_submitted_again_from_the_upload_its_job_names(
    emitted: EmittedMetrics,
) -> None:
    world = World(crashed_claim(JOB_A, seconds_ago=120, claim_expires_in=-5))

    report = world.run()

    assert report == {"resubmitted_submitted": 1}
    ((upload, final_attempt),) = world.submit.calls
    assert upload == Upload(
        bucket="uploads",
        key="incoming/cat photo.png",
        size=None,
        etag=None,
        version_id=None,  # an unversioned bucket: the identity is not an S3 version id
        sequencer="seq-7",
    )
    assert final_attempt is False
    assert emitted.values(Metric.JOBS_RECOVERED) == [1.0]


def test_a_crashed_submit_past_the_deadline_gets_one_last_try() -> None:
    world = World(
        crashed_claim(JOB_A, seconds_ago=DEADLINE + 5, claim_expires_in=-5),
        submit=FakeSubmit(OUTAGE),
    )

    report = world.run()

    assert report == {"gave_up_fal_unavailable": 1}
    ((_, final_attempt),) = world.submit.calls
    assert final_attempt is True


def test_a_crashed_submit_fal_is_unavailable_for_is_tried_again_later() -> None:
    world = World(
        crashed_claim(JOB_A, seconds_ago=120, claim_expires_in=-5), submit=FakeSubmit(OUTAGE)
    )

    report = world.run()

    assert report == {"retry_later": 1}
    assert world.job(JOB_A)["next_check_at"] == int(NOW) + AFTER


def test_a_request_still_running_before_the_deadline_is_checked_again_later(
    emitted: EmittedMetrics,
) -> None:
    world = World(submitted(JOB_A, seconds_ago=100), fal=FakeFal({"req-1": None}))

    report = world.run()

    assert report == {"still_running": 1}
    assert world.job(JOB_A)["status"] == "SUBMITTED"
    assert world.job(JOB_A)["next_check_at"] == int(NOW) + AFTER
    assert world.fal.cancelled == []
    assert emitted.values(Metric.OLDEST_OPEN_JOB_SECONDS) == [100.0]


def test_a_request_running_past_the_deadline_is_cancelled_and_the_job_expires(
    emitted: EmittedMetrics,
) -> None:
    world = World(submitted(JOB_A, seconds_ago=DEADLINE + 1), fal=FakeFal({"req-1": None}))

    report = world.run()

    assert report == {"expired": 1}
    assert world.fal.cancelled == ["req-1"]
    job = world.job(JOB_A)
    assert (job["status"], job["error_code"]) == ("EXPIRED", "fal_deadline")
    assert "next_check_at" not in job  # no longer due
    assert world.events.statuses == ["EXPIRED"]
    assert emitted.values(Metric.JOBS_EXPIRED) == [1.0]
    assert emitted.values(Metric.JOBS_RECOVERED) == []  # an expiry is not a recovery


def test_a_request_fal_cannot_tell_about_past_the_deadline_expires() -> None:
    world = World(submitted(JOB_A, seconds_ago=DEADLINE + 1), fal=FakeFal({"req-1": OUTAGE}))

    report = world.run()

    assert report == {"expired": 1}
    assert world.job(JOB_A)["status"] == "EXPIRED"


def test_a_request_fal_cannot_tell_about_before_the_deadline_is_checked_again_later() -> None:
    world = World(submitted(JOB_A, seconds_ago=100), fal=FakeFal({"req-1": OUTAGE}))

    report = world.run()

    assert report == {"retry_later": 1}
    assert world.job(JOB_A)["status"] == "SUBMITTED"
    assert world.job(JOB_A)["next_check_at"] == int(NOW) + AFTER


def test_a_result_whose_webhook_was_lost_is_recorded_by_the_reconciler(
    emitted: EmittedMetrics,
) -> None:
    finished = FalDelivery(
        request_id="req-1",
        status="OK",
        payload={"video": {"url": "https://v3.fal.media/files/out.mp4", "file_size": 900}},
    )
    world = World(submitted(JOB_A, seconds_ago=100), fal=FakeFal({"req-1": finished}))

    report = world.run()

    assert report == {"recovered_completed": 1}
    assert world.job(JOB_A)["status"] == "COMPLETED"
    assert list(world.store.objects.values()) == ["https://v3.fal.media/files/out.mp4"]
    assert world.events.statuses == ["COMPLETED"]
    assert emitted.values(Metric.JOBS_RECOVERED) == [1.0]


def test_one_job_that_cannot_be_settled_does_not_stop_the_run(emitted: EmittedMetrics) -> None:
    # An unexpected failure settling one job: it is counted and looked at again; the next job
    # still settles.
    broken = FalDelivery(
        request_id="req-1",
        status="OK",
        payload={"video": {"url": "https://v3.fal.media/files/broken.mp4"}},
    )
    world = World(
        submitted(JOB_A, seconds_ago=100),
        submitted(JOB_B, seconds_ago=DEADLINE + 1, request_id="req-2"),
        fal=FakeFal({"req-1": broken, "req-2": None}),
    )
    world.store.broken.add("https://v3.fal.media/files/broken.mp4")

    report = world.run()

    assert report == {"errors": 1, "expired": 1}
    assert world.job(JOB_A)["next_check_at"] == int(NOW) + AFTER
    assert emitted.values(Metric.RECONCILE_ERRORS) == [1.0]


def test_a_video_on_a_host_not_allowed_ends_the_job_failed_at_once() -> None:
    refused = FalDelivery(
        request_id="req-1",
        status="OK",
        payload={"video": {"url": "https://elsewhere.example/out.mp4"}},
    )
    world = World(submitted(JOB_A, seconds_ago=100), fal=FakeFal({"req-1": refused}))
    world.store.refused.add("https://elsewhere.example/out.mp4")

    report = world.run()

    assert report == {"recovered_failed": 1}
    job = world.job(JOB_A)
    assert (job["status"], job["error_code"]) == ("FAILED", "video_host_not_allowed")
    assert world.events.statuses == ["FAILED"]


def test_jobs_not_reached_before_the_function_runs_out_of_time_stay_due(
    emitted: EmittedMetrics,
) -> None:
    world = World(
        submitted(JOB_A, seconds_ago=10, request_id="req-1"),
        submitted(JOB_B, seconds_ago=300, request_id="req-2"),
        submitted(JOB_C, seconds_ago=200, request_id="req-3"),
        fal=FakeFal({"req-1": None, "req-2": None, "req-3": None}),
    )

    report = world.run(stop_after=1)

    assert report == {"still_running": 1, "not_reached": 2}
    checked = [j for j in (JOB_A, JOB_B, JOB_C) if world.job(j)["next_check_at"] > NOW]
    assert len(checked) == 1
    # The jobs not reached count as open: the oldest of all three is 300 s old.
    assert emitted.values(Metric.OLDEST_OPEN_JOB_SECONDS) == [300.0]


def test_oldest_open_job_seconds_counts_only_the_jobs_the_run_left_open(
    emitted: EmittedMetrics,
) -> None:
    world = World(
        submitted(JOB_A, seconds_ago=DEADLINE + 500, request_id="req-1"),  # expires now
        submitted(JOB_B, seconds_ago=45, request_id="req-2"),  # still running
        fal=FakeFal({"req-1": None, "req-2": None}),
    )

    report = world.run()

    assert report == {"expired": 1, "still_running": 1}
    assert emitted.values(Metric.OLDEST_OPEN_JOB_SECONDS) == [45.0]


def test_a_run_with_nothing_due_reports_no_open_job(emitted: EmittedMetrics) -> None:
    world = World()

    assert world.run() == {}
    assert emitted.values(Metric.OLDEST_OPEN_JOB_SECONDS) == [0.0]


# --- the endpoint each job was sent to --------------------------------------------------------


def test_fal_is_asked_about_each_request_at_the_endpoint_its_job_recorded() -> None:
    # Sent to v2.2 and turbo before FalEndpoint changed; the oldest job predates the recording.
    on_v22 = submitted(JOB_A, seconds_ago=100, request_id="req-a")
    on_v22["fal_endpoint"] = "fal-ai/pika/v2.2/image-to-video"
    on_turbo = submitted(JOB_B, seconds_ago=DEADLINE + 1, request_id="req-b")
    on_turbo["fal_endpoint"] = "fal-ai/pika/v2/turbo/image-to-video"
    unrecorded = submitted(JOB_C, seconds_ago=100, request_id="req-c")
    world = World(
        on_v22, on_turbo, unrecorded, fal=FakeFal({"req-a": None, "req-b": None, "req-c": None})
    )

    world.run()

    assert sorted(world.fal.asked_at) == [
        ("req-a", "fal-ai/pika/v2.2/image-to-video"),
        ("req-b", "fal-ai/pika/v2/turbo/image-to-video"),  # its status...
        ("req-b", "fal-ai/pika/v2/turbo/image-to-video"),  # ...and its cancellation
        ("req-c", "fal-ai/pika/v2.1/image-to-video"),
    ]
