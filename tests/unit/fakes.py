"""Small in-memory stand-ins for the recorder's and the reconciler's collaborators.

Each keeps only what the code under test reads back: the jobs table as a dict that honours the
one transition table (jobs/statuses.py), the events published, the videos stored, and what fal and
the submit path were asked. The real adapters are tested against moto and the fal emulator.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pika_pipeline.errors import JobConflict, VideoHostNotAllowed, VideoUnavailable
from pika_pipeline.jobs.job import Job
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES, JobStatus, can_transition
from pika_pipeline.observability import Metric, metrics
from pika_pipeline.reconcile.reconciler import Reconciler
from pika_pipeline.results.recorder import ResultRecorder
from pika_pipeline.results.video_keys import DEFAULT_TEMPLATE, VideoKeyTemplate
from pika_pipeline.results.video_placement import VideoPlacement
from pika_pipeline.results.video_store import KeyTaken, StoredObject, StoredVideo

if TYPE_CHECKING:
    from pika_pipeline.fal.delivery import FalDelivery
    from pika_pipeline.fal.gateway import FalGateway
    from pika_pipeline.jobs.events import JobEvents
    from pika_pipeline.jobs.open_jobs import OpenJobs
    from pika_pipeline.jobs.repository import JobRepository
    from pika_pipeline.reconcile.lost_answers import LostAnswers
    from pika_pipeline.results.video_store import VideoStore
    from pika_pipeline.submit.service import SubmitOutcome, SubmitService
    from pika_pipeline.submit.uploads import Upload

OUTPUT_BUCKET = "videos"
OUTPUT_PREFIX = "videos/"
INPUT_PREFIX = "uploads/"


class FakeJobs:
    """The jobs table: one dict per job, changed only by the moves the transition table allows."""

    def __init__(self, *items: dict[str, Any]) -> None:
        self.items = {str(item["job_id"]): copy.deepcopy(item) for item in items}

    def get(self, job_id: str) -> Job | None:
        item = self.items.get(job_id)
        return Job(copy.deepcopy(item)) if item else None

    def move_video(self, job_id: str, *, from_key: str, to_key: str) -> Job:
        item = self.items.get(job_id)
        if item is None or item.get("status") != "COMPLETED" or item.get("output_key") != from_key:
            raise JobConflict(f"job {job_id}'s video is not at {from_key}")
        item["output_key"] = to_key
        return Job(copy.deepcopy(item))

    def jobs_with_request(self, request_id: str) -> set[str]:
        return {
            job_id for job_id, item in self.items.items() if item.get("request_id") == request_id
        }

    def transition(
        self,
        job_id: str,
        target: JobStatus,
        *,
        attributes: dict[str, Any] | None = None,
        add_request_id: str | None = None,
        close_attempt: str | None = None,
        attempt_must_be_open: bool = False,
        reopen_failed_submit: bool = False,
        current: Job | None = None,
    ) -> Job:
        item = self.items.get(job_id)
        if item is None:
            raise JobConflict(f"job {job_id} is missing")
        status = JobStatus(item["status"])
        fal_request_known = not reopen_failed_submit or bool(item.get("request_ids"))
        if not can_transition(status, target, fal_request_known=fal_request_known):
            raise JobConflict(f"job {job_id} cannot move from {status} to {target}")
        if attempt_must_be_open and close_attempt not in item.get("open_attempts", set()):
            raise JobConflict(f"attempt {close_attempt} of job {job_id} was answered already")
        if status in TERMINAL_STATUSES and target == JobStatus.COMPLETED:
            item.pop("error_code", None)
            item.pop("error_message", None)
        item.update(attributes or {}, status=target)
        if add_request_id:
            item.setdefault("request_id", add_request_id)
            item["request_ids"] = {*item.get("request_ids", set()), add_request_id}
        if close_attempt:
            item["open_attempts"] = set(item.get("open_attempts", set())) - {close_attempt}
        if target in TERMINAL_STATUSES:
            item.pop("open_shard", None)  # leaves the reconciler's index
            item.pop("next_check_at", None)
        return Job(copy.deepcopy(item))

    def record_request_id(self, job_id: str, request_id: str, *, attempt: str) -> Job:
        try:
            return self.transition(
                job_id,
                JobStatus.SUBMITTED,
                attributes={"request_id": request_id},
                add_request_id=request_id,
                close_attempt=attempt,
            )
        except JobConflict:
            self.record_extra_request(job_id, request_id, attempt=None)
            return Job(copy.deepcopy(self.items[job_id]))

    def record_extra_request(self, job_id: str, request_id: str, *, attempt: str | None) -> None:
        item = self.items[job_id]
        if attempt is not None and attempt not in item.get("open_attempts", set()):
            raise JobConflict(f"attempt {attempt} of {job_id} was answered")
        item.setdefault("request_id", request_id)
        item["request_ids"] = {*item.get("request_ids", set()), request_id}
        item["open_attempts"] = set(item.get("open_attempts", set())) - {attempt}


class FakeOpenJobs:
    """The sparse OpenJobs index over the same dict: open jobs whose check is due."""

    def __init__(self, jobs: FakeJobs) -> None:
        self._jobs = jobs

    def due(self, *, now_epoch: int, limit: int) -> list[Job]:
        due = [
            item
            for item in self._jobs.items.values()
            if "open_shard" in item and item["next_check_at"] <= now_epoch
        ]
        due.sort(key=lambda item: int(item["next_check_at"]))
        return [Job(copy.deepcopy(item)) for item in due[:limit]]

    def check_again_at(self, job_id: str, when_epoch: int) -> None:
        item = self._jobs.items.get(job_id)
        if item is None or "open_shard" not in item:
            raise JobConflict(f"job {job_id} is no longer open")
        item["next_check_at"] = when_epoch


@dataclass
class RecordedEvents:
    """The completion events published, as the items they announced."""

    published: list[dict[str, Any]] = field(default_factory=list)
    refuse: int = 0  # the next this many publishes fail, as a PutEvents EventBridge refused

    def finished(self, job: Job | dict[str, Any]) -> bool:
        if self.refuse:
            self.refuse -= 1
            return False
        self.published.append(copy.deepcopy(job.item if isinstance(job, Job) else job))
        return True

    @property
    def statuses(self) -> list[str]:
        return [str(item["status"]) for item in self.published]


@dataclass
class FakeVideoStore:
    """The output bucket: key -> the URL the video was copied from (and its metadata, and an
    ETag that changes with every write, for the conditional writes)."""

    objects: dict[str, str] = field(default_factory=dict)
    unavailable: set[str] = field(default_factory=set)  # URLs whose copy fails for now
    refused: set[str] = field(default_factory=set)  # URLs on a host missing from MediaHosts
    broken: set[str] = field(default_factory=set)  # URLs whose copy fails unexpectedly (a bug)
    size: int = 1234
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    writes: int = 0

    def copy(
        self,
        url: str,
        *,
        key: str,
        expected_size: int | None,
        metadata: dict[str, str],
        only_if_absent: bool = False,
    ) -> StoredVideo:
        if url in self.refused:
            raise VideoHostNotAllowed(f"{url} is on a host missing from MediaHosts")
        if url in self.broken:
            raise RuntimeError("an unexpected failure")
        if url in self.unavailable:
            raise VideoUnavailable("the media host answered HTTP 503")
        if only_if_absent and key in self.objects:
            raise KeyTaken(key)
        self._write(key, url, metadata)
        return StoredVideo(bucket=OUTPUT_BUCKET, key=key, size=expected_size or self.size)

    def delete(self, key: str) -> None:
        del self.objects[key]
        self.metadata.pop(key, None)
        self.etags.pop(key, None)

    def head(self, key: str) -> StoredObject | None:
        if key not in self.objects:
            return None
        return StoredObject(etag=self.etags[key], size=self.size, metadata=self.metadata[key])

    def copy_within(
        self,
        source_key: str,
        key: str,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        source_etag: str | None = None,
    ) -> bool:
        if source_key not in self.objects:
            return False
        if if_match is not None and self.etags.get(key) != if_match:
            return False
        if if_none_match and key in self.objects:
            return False
        if source_etag is not None and self.etags[source_key] != source_etag:
            return False
        self._write(key, self.objects[source_key], self.metadata[source_key])
        return True

    def _write(self, key: str, url: str, metadata: dict[str, str]) -> None:
        self.writes += 1
        self.objects[key] = url
        self.metadata[key] = dict(metadata)
        self.etags[key] = f'"etag-{self.writes}"'


@dataclass
class FakeFal:
    """fal's answers about requests: a delivery when finished, None while running, or an error."""

    answers: dict[str, FalDelivery | Exception | None] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    # (request id, endpoint) of every question and cancellation, in order.
    asked_at: list[tuple[str, str]] = field(default_factory=list)

    def outcome(self, request_id: str, *, endpoint: str) -> FalDelivery | None:
        self.asked_at.append((request_id, endpoint))
        answer = self.answers[request_id]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def cancel(self, request_id: str, *, endpoint: str) -> None:
        self.asked_at.append((request_id, endpoint))
        self.cancelled.append(request_id)


@dataclass
class FakeSubmit:
    """The submit path as the reconciler uses it: one answer (or error) for every resubmit."""

    answer: SubmitOutcome | Exception
    calls: list[tuple[Upload, bool]] = field(default_factory=list)

    def resubmit(self, upload: Upload, *, final_attempt: bool = False) -> SubmitOutcome:
        self.calls.append((upload, final_attempt))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class EmittedMetrics:
    """The metrics the code handed to Powertools since this was made (the EMF line to be)."""

    def __init__(self) -> None:
        metrics.clear_metrics()

    def values(self, name: Metric) -> list[float]:
        entry = metrics.metric_set.get(name)
        return list(entry["Value"]) if entry else []


def recorder_with(
    jobs: FakeJobs, store: FakeVideoStore, events: RecordedEvents, *, clock: Callable[[], float]
) -> ResultRecorder:
    return ResultRecorder(
        repository=cast("JobRepository", jobs),
        store=cast("VideoStore", store),
        events=cast("JobEvents", events),
        placement=VideoPlacement(
            store=cast("VideoStore", store),
            repository=cast("JobRepository", jobs),
            output_prefix=OUTPUT_PREFIX,
            input_prefix=INPUT_PREFIX,
            template=VideoKeyTemplate(DEFAULT_TEMPLATE),
        ),
        clock=clock,
    )


def reconciler_with(
    jobs: FakeJobs,
    *,
    fal: FakeFal,
    submit: FakeSubmit,
    store: FakeVideoStore,
    events: RecordedEvents,
    clock: Callable[[], float],
    reconcile_after_seconds: int,
    job_deadline_seconds: int,
    lost_answers: LostAnswers | None = None,
) -> Reconciler:
    return Reconciler(
        lost_answers=lost_answers,
        open_jobs=cast("OpenJobs", FakeOpenJobs(jobs)),
        repository=cast("JobRepository", jobs),
        fal=lambda: cast("FalGateway", fal),
        recorder=recorder_with(jobs, store, events, clock=clock),
        submit=cast("SubmitService", submit),
        events=cast("JobEvents", events),
        reconcile_after_seconds=reconcile_after_seconds,
        job_deadline_seconds=job_deadline_seconds,
        clock=clock,
    )
