"""A crashed claim whose request fal received (its answer lost to a kill or a timeout) is adopted
from fal's request history, never submitted twice; only a claim fal never heard of is."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest

from pika_pipeline.errors import FalHistoryUnavailable
from pika_pipeline.fal.request_history import PastRequest
from pika_pipeline.jobs.job import Job
from pika_pipeline.observability import Metric
from pika_pipeline.reconcile.lost_answers import (
    CLOCK_MARGIN,
    LostAnswers,
    requests_for_image,
    same_image,
)
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

if TYPE_CHECKING:
    from pika_pipeline.fal.request_history import FalRequestHistory

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
AFTER = 60
DEADLINE = 600
ENDPOINT = "fal-ai/pika/v2.2/image-to-video"
IMAGE = "https://uploads.s3.eu-west-1.amazonaws.com/incoming/cat%20photo.png"
JOB = "a" * 32


def _presigned(url: str = IMAGE, *, version: str | None = "v-7", signed: str = "sig-1") -> str:
    query = f"versionId={version}&" if version else ""
    return f"{url}?{query}X-Amz-Date=20261202T115900Z&X-Amz-Signature={signed}"


def _past(request_id: str, *, sent: str = "2026-12-02T11:59:00Z", **kwargs: Any) -> PastRequest:
    return PastRequest(request_id=request_id, sent_at=sent, image_url=_presigned(**kwargs))


# --- which requests are the job's ---------------------------------------------------------------


def test_a_url_minted_for_another_attempt_of_the_same_object_version_is_the_same_image() -> None:
    assert same_image(_presigned(signed="first"), _presigned(signed="second"))


@pytest.mark.parametrize(
    "other",
    [
        _presigned(version="v-8"),  # another version of the key
        _presigned(version=None),  # the key's latest, whatever it is
        _presigned(IMAGE.replace("cat%20photo", "dog")),  # another key
        _presigned(IMAGE.replace("uploads.s3", "other.s3")),  # another bucket
    ],
)
def test_another_object_or_version_is_not_the_same_image(other: str) -> None:
    assert not same_image(other, _presigned())


def test_the_jobs_requests_are_those_for_its_image_not_taken_by_another_job_earliest_first() -> (
    None
):
    history = [
        _past("later", sent="2026-12-02T11:59:30Z"),
        _past("other-image", version="v-8"),
        _past("earlier", sent="2026-12-02T11:59:10Z"),
        PastRequest(request_id="no-input", sent_at="2026-12-02T11:59:00Z", image_url=None),
        _past("another-jobs", sent="2026-12-02T11:59:00Z"),
    ]

    found = requests_for_image(
        history, _presigned(signed="now"), taken_by_another=lambda rid: rid == "another-jobs"
    )

    assert [past.request_id for past in found] == ["earlier", "later"]


@dataclass
class FakeHistory:
    """fal's request history: what it lists, or the error it answers with."""

    listed: list[PastRequest] | FalHistoryUnavailable = field(default_factory=list)
    asked: list[tuple[str, datetime]] = field(default_factory=list)

    def since(self, endpoint: str, start: datetime) -> list[PastRequest]:
        self.asked.append((endpoint, start))
        if isinstance(self.listed, FalHistoryUnavailable):
            raise self.listed
        return self.listed


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def crashed_claim(*, dispatched_ago: float, attempts: set[str] | None = None) -> dict[str, Any]:
    dispatched = NOW - timedelta(seconds=dispatched_ago)
    return {
        "job_id": JOB,
        "status": "PENDING",
        "fal_endpoint": ENDPOINT,
        "source_bucket": "uploads",
        "source_key": "incoming/cat photo.png",
        "source_version": "v-7",
        "source_version_id": "v-7",
        "created_at": _iso(dispatched - timedelta(hours=3)),  # it waited QUEUED first
        "dispatched_at": _iso(dispatched),
        "claim_expires_at": int(NOW.timestamp()) - 5,
        "open_attempts": {"a-1"} if attempts is None else attempts,
        "open_shard": "open-0",
        "next_check_at": int(NOW.timestamp()) - 1,
    }


def _lost_answers(history: FakeHistory, jobs: FakeJobs) -> LostAnswers:
    return LostAnswers(
        history=lambda: cast("FalRequestHistory", history),
        image_url=lambda upload: _presigned(version=upload.s3_version_id, signed="minted-now"),
        jobs_with_request=jobs.jobs_with_request,
    )


def test_the_history_is_read_at_the_jobs_endpoint_from_just_before_its_dispatch() -> None:
    item = crashed_claim(dispatched_ago=120)
    history = FakeHistory([_past("req-1")])

    found = _lost_answers(history, FakeJobs(item)).find(Job(item))

    assert found == ["req-1"]
    assert history.asked == [(ENDPOINT, NOW - timedelta(seconds=120) - CLOCK_MARGIN)]


# --- what the reconciler does with them ---------------------------------------------------------


class World:
    def __init__(self, item: dict[str, Any], history: FakeHistory) -> None:
        self.jobs = FakeJobs(item)
        self.fal = FakeFal()
        self.submit = FakeSubmit(SubmitOutcome.SUBMITTED)
        self.history = history
        self.reconciler = reconciler_with(
            self.jobs,
            fal=self.fal,
            submit=self.submit,
            store=FakeVideoStore(),
            events=RecordedEvents(),
            clock=NOW.timestamp,
            reconcile_after_seconds=AFTER,
            job_deadline_seconds=DEADLINE,
            lost_answers=_lost_answers(history, self.jobs),
        )

    def run(self) -> dict[str, int]:
        return self.reconciler.run(reconcile_batch_size=10)

    @property
    def job(self) -> dict[str, Any]:
        return self.jobs.items[JOB]


@pytest.fixture(autouse=True)
def emitted() -> EmittedMetrics:
    return EmittedMetrics()


def test_a_claim_whose_request_fal_received_is_adopted_not_submitted_again(
    emitted: EmittedMetrics,
) -> None:
    world = World(crashed_claim(dispatched_ago=120), FakeHistory([_past("req-1")]))

    report = world.run()

    assert report == {"adopted": 1}
    assert world.submit.calls == []
    assert (world.job["status"], world.job["request_id"]) == ("SUBMITTED", "req-1")
    assert world.job["open_attempts"] == set()  # answered, as by the submit's own answer
    assert world.job["next_check_at"] == int(NOW.timestamp()) + AFTER
    assert world.fal.cancelled == []
    assert emitted.values(Metric.JOBS_RECOVERED) == [1.0]


def test_of_several_requests_for_the_claim_the_earliest_is_kept_and_the_rest_cancelled() -> None:
    history = FakeHistory(
        [_past("second", sent="2026-12-02T11:59:20Z"), _past("first", sent="2026-12-02T11:59:05Z")]
    )
    world = World(crashed_claim(dispatched_ago=120), history)

    world.run()

    assert world.submit.calls == []
    assert world.job["request_id"] == "first"
    assert world.job["request_ids"] == {"first", "second"}  # the extra one is accounted for
    assert world.fal.cancelled == ["second"]


def test_a_claim_fal_never_heard_of_is_submitted_again() -> None:
    world = World(crashed_claim(dispatched_ago=120), FakeHistory([_past("x", version="v-8")]))

    report = world.run()

    assert report == {"resubmitted_submitted": 1}
    assert len(world.submit.calls) == 1


def test_when_fals_history_cannot_be_read_nothing_is_submitted_until_it_can(
    emitted: EmittedMetrics,
) -> None:
    world = World(crashed_claim(dispatched_ago=120), FakeHistory(FalHistoryUnavailable("HTTP 503")))

    report = world.run()

    assert report == {"retry_later": 1}
    assert world.submit.calls == []
    assert world.job["status"] == "PENDING"
    assert world.job["next_check_at"] == int(NOW.timestamp()) + AFTER
    assert emitted.values(Metric.FAL_HISTORY_UNAVAILABLE) == [1.0]


def test_past_the_deadline_a_claim_fals_history_cannot_vouch_for_gets_its_last_try() -> None:
    world = World(
        crashed_claim(dispatched_ago=DEADLINE + 5), FakeHistory(FalHistoryUnavailable("HTTP 503"))
    )

    report = world.run()

    assert report == {"resubmitted_submitted": 1}
    ((upload, final_attempt),) = world.submit.calls
    assert upload.key == "incoming/cat photo.png"
    assert isinstance(upload, Upload)
    assert final_attempt is True
