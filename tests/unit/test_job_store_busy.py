"""A throttled jobs table is retried later, never lost: the submit batch backs off as in a fal
outage, and the reconciler leaves the job for a later run. Collaborators are stand-ins."""

from __future__ import annotations

from typing import Any

from pika_pipeline.errors import JobStoreBusy
from pika_pipeline.jobs.job import Job
from pika_pipeline.reconcile.reconciler import ReconcileOutcome, Reconciler
from tests.unit.test_submit_batch import Service, Sqs, batch_of, record

NOW = 1_800_000_000
RECONCILE_AFTER_SECONDS = 600
BUSY = JobStoreBusy("updating job x: the jobs table is busy (ThrottlingException)")


def test_a_throttled_table_backs_the_message_off_like_a_fal_outage() -> None:
    sqs = Sqs()

    answer = batch_of(Service({"a": BUSY}), sqs).handle(
        {"Records": [record("a", receive_count=2), record("b")]}
    )

    assert answer == {"batchItemFailures": [{"itemIdentifier": "id-a"}]}
    assert sqs.visibility == {"rh-a": 60}


class OpenJobs:
    def __init__(self, job: Job, *, busy: bool = False) -> None:
        self.job = job
        self.busy = busy
        self.rescheduled: dict[str, int] = {}

    def due(self, *, now_epoch: int, limit: int) -> list[Job]:
        return [self.job]

    def check_again_at(self, job_id: str, when_epoch: int) -> None:
        if self.busy:
            raise BUSY
        self.rescheduled[job_id] = when_epoch


class BusyRepository:
    def get(self, job_id: str) -> Job | None:
        raise BUSY


class Unused:
    """Stands where a collaborator the check never reaches would be: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was used")


def reconciler(open_jobs: OpenJobs) -> Reconciler:
    return Reconciler(
        open_jobs=open_jobs,  # type: ignore[arg-type]
        repository=BusyRepository(),  # type: ignore[arg-type]
        fal=Unused,  # type: ignore[arg-type]
        recorder=Unused(),  # type: ignore[arg-type]
        submit=Unused(),  # type: ignore[arg-type]
        events=Unused(),  # type: ignore[arg-type]
        reconcile_after_seconds=RECONCILE_AFTER_SECONDS,
        job_deadline_seconds=3600,
        clock=lambda: NOW,
    )


JOB = Job({"job_id": "job-1", "status": "SUBMITTED", "request_id": "req-1"})


def test_the_reconciler_checks_a_job_again_later_when_the_table_is_busy() -> None:
    open_jobs = OpenJobs(JOB)

    report = reconciler(open_jobs).run(reconcile_batch_size=5)

    assert report == {ReconcileOutcome.RETRY_LATER: 1}
    assert open_jobs.rescheduled == {"job-1": NOW + RECONCILE_AFTER_SECONDS}


def test_a_job_that_cannot_even_be_rescheduled_stays_due_and_the_run_goes_on() -> None:
    report = reconciler(OpenJobs(JOB, busy=True)).run(reconcile_batch_size=5)

    assert report == {ReconcileOutcome.RETRY_LATER: 1}
