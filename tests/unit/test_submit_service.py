"""SubmitService's decisions: what is ignored, rejected, submitted once, failed or retried.

Its collaborators are small in-memory stand-ins: the uploaded images (the S3 adapter), a jobs
table that keeps the real transition table, a fal gateway and an event publisher that record
what they were asked. The same paths run end to end against the local stack in tests/e2e.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from pika_pipeline.config.submit import SubmitServiceSettings
from pika_pipeline.errors import (
    FalRequestFailed,
    FalUnavailable,
    FalUnavailableKind,
    JobConflict,
    UploadRejected,
)
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.job import Job
from pika_pipeline.jobs.statuses import JobStatus, sources_of
from pika_pipeline.observability import metrics
from pika_pipeline.submit.input_objects import InputObject
from pika_pipeline.submit.service import SubmitOutcome, SubmitService
from pika_pipeline.submit.uploads import Upload

INPUT = "pika-input"
OUTPUT = "pika-output"
NOW = 1_800_000_000.0
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 12
SETTINGS = SubmitServiceSettings.from_environment(
    {
        "JOBS_TABLE": "jobs",
        "OUTPUT_BUCKET": OUTPUT,
        "WEBHOOK_TOKEN_SECRET": "token-secret",
        "EVENT_BUS_NAME": "default",
        "INPUT_PREFIX": "uploads/",
        "FAL_KEY_SECRET_NAME": "fal-key",
        "WEBHOOK_URL": "https://hook.example/",
        "DEFAULT_RESOLUTION": "720p",
        "DEFAULT_DURATION": "5",
        "PRESIGN_EXPIRES_SECONDS": "3600",
        "JOB_DEADLINE_SECONDS": "10800",
        "RECONCILE_AFTER_SECONDS": "900",
        "MAX_IMAGE_BYTES": "1000",
        "CONTROL_TABLE": "control",
        "FAL_CONCURRENCY": "2",
        "FAL_QUEUE_HEADROOM": "1",
    }
)


# --- stand-ins ----------------------------------------------------------------------------------


class Images:
    """Uploaded images by key: what a ranged GET would tell, or the rejection it would raise."""

    def __init__(self) -> None:
        self.objects: dict[str, InputObject | UploadRejected] = {}
        self.read: list[str] = []
        self.presigned: list[str] = []

    def put(
        self, key: str, *, metadata: dict[str, str], size: int = 500, head: bytes = JPEG
    ) -> None:
        self.objects[key] = InputObject(metadata=metadata, size=size, head=head)

    def inspect(self, upload: Upload) -> InputObject:
        self.read.append(upload.key)
        found = self.objects[upload.key]
        if isinstance(found, UploadRejected):
            raise found
        return found

    def presigned_url(self, upload: Upload) -> str:
        self.presigned.append(upload.key)
        return f"https://{upload.bucket}.s3.example/{upload.key}?signed"


class Jobs:
    """The jobs table's conditions, in memory; status changes follow the real transition table."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def enqueue(self, item: dict[str, Any], *, lane: str, order: str, queued_at: str) -> None:
        current = self.items.get(item["job_id"])
        if current is not None and not self._claimable(current, 0):
            raise JobConflict(item["job_id"])
        self.items[item["job_id"]] = {
            **(current or {}),
            **item,
            "status": JobStatus.QUEUED,
            "queue_lane": lane,
            "queue_order": order,
        }

    def dispatch(self, job_id: str, *, attempt: str, now_epoch: int) -> Job:
        """What the slot transaction does to the job: QUEUED -> PENDING under a claim."""
        item = self.items[job_id]
        assert item["status"] == JobStatus.QUEUED
        item.update(status=JobStatus.PENDING, claim_expires_at=now_epoch + 300, slot=0)
        return Job(item)

    def reclaim(
        self,
        job_id: str,
        *,
        attempt: str,
        now_epoch: int,
        claim_seconds: int,
        reconcile_after_seconds: int,
    ) -> Job:
        item = self.items.get(job_id)
        if (
            item is None
            or item["status"] != JobStatus.PENDING
            or "request_id" in item
            or item["claim_expires_at"] >= now_epoch
        ):
            raise JobConflict(job_id)
        item.update(claim_expires_at=now_epoch + claim_seconds)
        return Job(item)

    @staticmethod
    def _claimable(item: dict[str, Any], now_epoch: int) -> bool:
        if "request_id" in item:
            return False
        return bool(
            item["status"] == JobStatus.FAILED and item["error_code"] == ErrorCode.FAL_UNAVAILABLE
        )

    def release_claim(
        self, job_id: str, *, attempts_error: str, check_at: int | None = None
    ) -> None:
        item = self.items[job_id]
        if item["status"] != JobStatus.PENDING or "request_id" in item:
            raise JobConflict(job_id)
        item.update(claim_expires_at=0, last_error=attempts_error)
        if check_at is not None:
            item["next_check_at"] = check_at

    def record_rejection(self, item: dict[str, Any]) -> dict[str, Any]:
        if item["job_id"] in self.items:
            raise JobConflict(item["job_id"])
        self.items[item["job_id"]] = {**item, "status": JobStatus.REJECTED}
        return self.items[item["job_id"]]

    def reject_stranded(self, job_id: str, *, now_epoch: int, code: str, message: str) -> Job:
        item = self.items.get(job_id)
        if item is None or not (
            item["status"] == JobStatus.PENDING
            and "request_id" not in item
            and item["claim_expires_at"] < now_epoch
        ):
            raise JobConflict(job_id)
        item.update(status=JobStatus.REJECTED, error_code=code, error_message=message)
        return Job(item)

    def record_request_id(self, job_id: str, request_id: str, *, attempt: str) -> Job:
        return self.transition(job_id, JobStatus.SUBMITTED, attributes={"request_id": request_id})

    def transition(
        self,
        job_id: str,
        target: JobStatus,
        *,
        attributes: dict[str, Any] | None = None,
        close_attempt: str | None = None,
    ) -> Job:
        item = self.items.get(job_id)
        if item is None or JobStatus(item["status"]) not in sources_of(target):
            raise JobConflict(job_id)
        item.update(status=target, **(attributes or {}))
        if close_attempt:
            item["open_attempts"] = set(item.get("open_attempts", set())) - {close_attempt}
        return Job(item)


class Fal:
    """Answers each submit with a request id, or with the errors it is given, in order."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.submitted: list[tuple[dict[str, Any], str]] = []
        self.endpoints: list[str] = []

    def submit(self, arguments: dict[str, Any], *, webhook_url: str, endpoint: str) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.submitted.append((arguments, webhook_url))
        self.endpoints.append(endpoint)
        return f"req-{len(self.submitted)}"


class Events:
    def __init__(self) -> None:
        self.finished_jobs: list[dict[str, Any]] = []

    def finished(self, job: Job | dict[str, Any]) -> None:
        self.finished_jobs.append(dict(job.item if isinstance(job, Job) else job))


class Ranks:
    def __init__(self) -> None:
        self.ranks: dict[tuple[str, str], int] = {}

    def next_rank(self, lane: str, batch: str) -> int:
        self.ranks[(lane, batch)] = self.ranks.get((lane, batch), 0) + 1
        return self.ranks[(lane, batch)]


class World:
    def __init__(self, fal: Fal | None = None) -> None:
        self.images = Images()
        self.jobs = Jobs()
        self.fal = fal or Fal()
        self.events = Events()
        self.service = self.service_with(SETTINGS)

    def service_with(self, settings: SubmitServiceSettings) -> SubmitService:
        """The submit function as deployed with ``settings`` (after a redeploy, say)."""
        return SubmitService(
            settings=settings,
            repository=self.jobs,  # type: ignore[arg-type]
            images=self.images,  # type: ignore[arg-type]
            fal=lambda: self.fal,  # type: ignore[arg-type, return-value]
            token_key=lambda: "token-key",
            events=self.events,  # type: ignore[arg-type]
            fair_share=Ranks(),  # type: ignore[arg-type]
            clock=lambda: NOW,
        )

    def submit(self, upload: Upload) -> SubmitOutcome:
        """An upload event, then its dispatch (a free slot): the submit path end to end."""
        outcome = self.service.process_upload(upload)
        if outcome is not SubmitOutcome.QUEUED:
            return outcome
        job = self.jobs.dispatch(self.job(upload)["job_id"], attempt="a1", now_epoch=int(NOW))
        return self.service.dispatched(job, attempt="a1", started=NOW)

    def job(self, upload: Upload) -> dict[str, Any]:
        job_id = job_id_for(bucket=upload.bucket, key=upload.key, version=upload.version)
        return self.jobs.items[job_id]


@pytest.fixture(autouse=True)
def _no_metrics_left_over() -> Iterator[None]:
    yield
    metrics.clear_metrics()


def upload(key: str = "uploads/cat.jpg", *, bucket: str = INPUT, size: int = 500) -> Upload:
    return Upload(
        bucket=bucket, key=key, size=size, etag="etag-1", version_id="v1", sequencer="seq-1"
    )


# --- ignored ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ignored",
    [
        upload("elsewhere/cat.jpg"),  # outside the input prefix
        upload("uploads/cat.jpg", bucket=OUTPUT),  # the pipeline's own output
    ],
)
def test_an_upload_the_pipeline_does_not_watch_is_ignored_without_a_trace(ignored: Upload) -> None:
    world = World()

    outcome = world.service.process_upload(ignored)

    assert outcome is SubmitOutcome.IGNORED
    assert (world.jobs.items, world.images.read, world.fal.submitted) == ({}, [], [])


def test_s3s_test_event_names_no_upload() -> None:
    world = World()

    assert world.service.process_message(json.dumps({"Event": "s3:TestEvent"})) == []
    assert world.jobs.items == {}


# --- rejected -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "size", "head", "code"),
    [
        ({}, 500, JPEG, ErrorCode.MISSING_PROMPT),
        ({"prompt": "a cat", "resolution": "4k"}, 500, JPEG, ErrorCode.INVALID_RESOLUTION),
        ({"prompt": "a cat"}, 1001, JPEG, ErrorCode.IMAGE_TOO_LARGE),
        ({"prompt": "a cat"}, 500, b"GIF89a" + b"\0" * 10, ErrorCode.UNSUPPORTED_IMAGE_TYPE),
        ({"prompt": "a cat", "priority": "urgent"}, 500, JPEG, ErrorCode.INVALID_PRIORITY),
    ],
)
def test_an_unusable_upload_is_recorded_rejected_and_announced_and_fal_is_not_called(
    metadata: dict[str, str], size: int, head: bytes, code: ErrorCode
) -> None:
    world = World()
    world.images.put("uploads/cat.jpg", metadata=metadata, size=size, head=head)

    outcome = world.submit(upload())

    assert outcome is SubmitOutcome.REJECTED
    job = world.job(upload())
    assert (job["status"], job["error_code"]) == (JobStatus.REJECTED, code)
    assert job["error_message"]
    assert [event["job_id"] for event in world.events.finished_jobs] == [job["job_id"]]
    assert (world.fal.submitted, world.images.presigned) == ([], [])


@pytest.mark.parametrize("code", [ErrorCode.EMPTY_OBJECT, ErrorCode.OBJECT_NOT_FOUND])
def test_what_s3_says_of_the_object_ends_in_the_job_record(code: ErrorCode) -> None:
    world = World()
    world.images.objects["uploads/cat.jpg"] = UploadRejected(code, "as S3 said")

    assert world.submit(upload()) is SubmitOutcome.REJECTED
    assert world.job(upload())["error_code"] == code
    assert len(world.events.finished_jobs) == 1


# --- queued, then submitted once ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "metadata", "lane", "batch"),
    [
        ("uploads/shop/cat.jpg", {"prompt": "a cat"}, "normal", "shop"),
        ("uploads/cat.jpg", {"prompt": "a cat", "priority": "High"}, "high", ""),
        ("uploads/shop/cat.jpg", {"prompt": "a cat", "priority": "low", "batch": "s"}, "low", "s"),
    ],
)
def test_a_valid_upload_waits_queued_in_its_lane_and_batch_and_pays_nothing(
    key: str, metadata: dict[str, str], lane: str, batch: str
) -> None:
    world = World()
    world.images.put(key, metadata=metadata)

    outcome = world.service.process_upload(upload(key))

    assert outcome is SubmitOutcome.QUEUED
    job = world.job(upload(key))
    assert (job["status"], job["priority"], job["batch"]) == (JobStatus.QUEUED, lane, batch)
    assert job["queue_lane"] == lane
    # No presigned URL and no fal request until it is dispatched.
    assert (world.images.presigned, world.fal.submitted) == ([], [])
    assert world.events.finished_jobs == []


def test_a_valid_upload_is_submitted_once_with_its_presigned_image_and_its_webhook() -> None:
    world = World()
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat", "seed": "7"})

    outcome = world.submit(upload())

    assert outcome is SubmitOutcome.SUBMITTED
    [(arguments, webhook_url)] = world.fal.submitted
    assert arguments == {
        "image_url": f"https://{INPUT}.s3.example/uploads/cat.jpg?signed",
        "prompt": "a cat",
        "resolution": "720p",
        "duration": 5,
        "seed": 7,
    }
    job = world.job(upload())
    assert webhook_url.startswith("https://hook.example/")
    assert job["job_id"] in webhook_url
    assert (job["status"], job["request_id"]) == (JobStatus.SUBMITTED, "req-1")
    assert (job["prompt"], job["seed"], job["source_version_id"]) == ("a cat", 7, "v1")
    assert world.events.finished_jobs == []


def test_the_correlation_id_and_upload_sequencer_are_kept_on_the_job_but_never_sent_to_fal() -> (
    None
):
    world = World()
    world.images.put(
        "uploads/cat.jpg", metadata={"prompt": "a cat", "correlation-id": "SKU 123 / batch 7"}
    )

    world.submit(upload())

    [(arguments, _)] = world.fal.submitted
    assert "correlation_id" not in arguments
    job = world.job(upload())
    assert (job["correlation_id"], job["source_sequencer"]) == ("SKU 123 / batch 7", "seq-1")


def test_a_correlation_id_with_a_control_character_is_rejected_before_paying() -> None:
    world = World()
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat", "correlation-id": "a\tb"})

    world.submit(upload())

    job = world.job(upload())
    assert (job["status"], job["error_code"]) == (JobStatus.REJECTED, "invalid_correlation_id")
    assert world.fal.submitted == []


@pytest.mark.parametrize(
    "status", [JobStatus.QUEUED, JobStatus.PENDING, JobStatus.SUBMITTED, JobStatus.COMPLETED]
)
def test_an_upload_that_already_has_a_job_is_never_sent_to_fal_again(status: JobStatus) -> None:
    world = World()
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat"})
    job_id = job_id_for(bucket=INPUT, key="uploads/cat.jpg", version="v1")
    # A waiting job, a live claim, or a job fal already accepted.
    world.jobs.items[job_id] = {"job_id": job_id, "status": status, "claim_expires_at": NOW + 60}
    if status not in (JobStatus.QUEUED, JobStatus.PENDING):
        world.jobs.items[job_id]["request_id"] = "req-earlier"

    outcome = world.submit(upload())

    assert outcome is SubmitOutcome.DUPLICATE
    assert world.fal.submitted == []
    assert world.jobs.items[job_id]["status"] == status
    assert world.events.finished_jobs == []


# --- fal says no, or cannot be reached ----------------------------------------------------------


def test_a_request_fal_refuses_ends_failed_with_fals_reason_and_is_announced() -> None:
    world = World(Fal(FalRequestFailed(ErrorCode.FAL_VALIDATION, "image too small")))
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat"})

    outcome = world.submit(upload())

    assert outcome is SubmitOutcome.FAILED
    job = world.job(upload())
    assert (job["status"], job["error_code"], job["error_message"]) == (
        JobStatus.FAILED,
        ErrorCode.FAL_VALIDATION,
        "image too small",
    )
    assert [event["status"] for event in world.events.finished_jobs] == [JobStatus.FAILED]


def test_when_fal_is_down_at_dispatch_the_claim_is_released_and_the_job_keeps_its_slot() -> None:
    world = World(Fal(FalUnavailable("fal answered 503", kind=FalUnavailableKind.SERVER_ERROR)))
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat"})

    # Raised to the dispatcher, which stops filling: a fal that is down is not hammered.
    with pytest.raises(FalUnavailable):
        world.submit(upload())

    job = world.job(upload())
    # Still PENDING in its slot (not back in the queue), and its claim is free at once: the
    # reconciler's next look submits it again.
    assert (job["status"], job["slot"], job["claim_expires_at"]) == (JobStatus.PENDING, 0, 0)
    assert job["next_check_at"] == int(NOW)  # due now: the slot does not idle until its check
    assert job["last_error"] == "fal answered 503"
    assert world.events.finished_jobs == []
    assert world.fal.submitted == []


def test_after_an_outage_the_reconciler_resubmits_the_released_claim_once() -> None:
    world = World(Fal(FalUnavailable("fal answered 429", kind=FalUnavailableKind.RATE_LIMITED)))
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat"})
    with pytest.raises(FalUnavailable):
        world.submit(upload())

    assert world.service.resubmit(upload()) is SubmitOutcome.SUBMITTED
    # A second look finds the claim answered: never a second request.
    assert world.service.resubmit(upload()) is SubmitOutcome.DUPLICATE

    job = world.job(upload())
    assert (job["status"], job["request_id"], job["slot"]) == (JobStatus.SUBMITTED, "req-1", 0)
    assert len(world.fal.submitted) == 1


def test_before_the_deadline_a_resubmit_into_an_outage_waits_for_the_next_look() -> None:
    outage = FalUnavailable("connection refused", kind=FalUnavailableKind.UNREACHABLE)
    world = World(Fal(outage, outage))
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat"})
    with pytest.raises(FalUnavailable):
        world.submit(upload())

    with pytest.raises(FalUnavailable):
        world.service.resubmit(upload(), final_attempt=False)

    job = world.job(upload())
    assert (job["status"], job["claim_expires_at"]) == (JobStatus.PENDING, 0)
    assert world.events.finished_jobs == []


def test_on_the_last_try_past_the_deadline_a_fal_outage_ends_the_job_fal_unavailable() -> None:
    outage = FalUnavailable("connection refused", kind=FalUnavailableKind.UNREACHABLE)
    world = World(Fal(outage, outage))
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat"})
    with pytest.raises(FalUnavailable):
        world.submit(upload())

    # The reconciler's last try (the job is past its deadline): still raised, and recorded.
    with pytest.raises(FalUnavailable):
        world.service.resubmit(upload(), final_attempt=True)

    job = world.job(upload())
    assert (job["status"], job["error_code"]) == (JobStatus.FAILED, ErrorCode.FAL_UNAVAILABLE)
    assert [event["error_code"] for event in world.events.finished_jobs] == [
        ErrorCode.FAL_UNAVAILABLE
    ]
    assert world.fal.submitted == []


# --- the reconciler's resubmit ------------------------------------------------------------------


def test_a_crashed_claim_on_an_upload_no_longer_watched_ends_outside_input_prefix() -> None:
    world = World()
    moved = upload("before-the-prefix-changed/cat.jpg")
    job_id = job_id_for(bucket=INPUT, key=moved.key, version="v1")
    world.jobs.items[job_id] = {
        "job_id": job_id,
        "status": JobStatus.PENDING,
        "claim_expires_at": NOW - 1,  # the submit crashed; its claim ran out
    }

    outcome = world.service.resubmit(moved)

    assert outcome is SubmitOutcome.REJECTED
    job = world.jobs.items[job_id]
    assert (job["status"], job["error_code"]) == (
        JobStatus.REJECTED,
        ErrorCode.OUTSIDE_INPUT_PREFIX,
    )
    assert [event["job_id"] for event in world.events.finished_jobs] == [job_id]
    assert (world.images.read, world.fal.submitted) == ([], [])


def test_a_resubmit_of_a_watched_upload_submits_it_under_the_same_job() -> None:
    world = World()
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat"})
    job_id = job_id_for(bucket=INPUT, key="uploads/cat.jpg", version="v1")
    world.jobs.items[job_id] = {
        "job_id": job_id,
        "status": JobStatus.PENDING,
        "claim_expires_at": NOW - 1,
    }

    assert world.service.resubmit(upload()) is SubmitOutcome.SUBMITTED
    assert world.jobs.items[job_id]["status"] == JobStatus.SUBMITTED


# --- the endpoint a job was queued for -----------------------------------------------------------


def test_a_job_queued_before_a_fal_endpoint_change_is_sent_where_it_was_priced() -> None:
    world = World()
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat"})
    assert world.service.process_upload(upload()) is SubmitOutcome.QUEUED
    queued = dict(world.job(upload()))

    # FalEndpoint changes while the job waits; the redeployed function dispatches it.
    world.service = world.service_with(
        dataclasses.replace(SETTINGS, fal_endpoint="fal-ai/pika/v2.2/image-to-video")
    )
    job = world.jobs.dispatch(queued["job_id"], attempt="a1", now_epoch=int(NOW))
    assert world.service.dispatched(job, attempt="a1", started=NOW) is SubmitOutcome.SUBMITTED

    assert world.fal.endpoints == ["fal-ai/pika/v2.1/image-to-video"]
    assert world.job(upload())["price_usd"] == queued["price_usd"]


def test_the_reconcilers_resubmit_uses_the_endpoint_the_job_recorded() -> None:
    world = World()
    world.images.put("uploads/cat.jpg", metadata={"prompt": "a cat"})
    job_id = job_id_for(bucket=INPUT, key="uploads/cat.jpg", version="v1")
    world.jobs.items[job_id] = {
        "job_id": job_id,
        "status": JobStatus.PENDING,
        "claim_expires_at": NOW - 1,  # its dispatch crashed before fal answered
        "fal_endpoint": "fal-ai/pika/v2/turbo/image-to-video",
    }

    assert world.service.resubmit(upload()) is SubmitOutcome.SUBMITTED
    assert world.fal.endpoints == ["fal-ai/pika/v2/turbo/image-to-video"]
