"""Live progress of a batch: counters kept in the control table, moved with each job's transition.

One ``progress#<batch>`` item per batch. Its counters change only inside the transaction that
changes a job's status (jobs/repository.py), so a lost or duplicated transition can never drift
them, and nothing ever has to scan the jobs to count a batch.

Why the control table, and why not ``batch#...``: the control table already holds the pipeline's
small shared counters (slots, fair-share ranks, spend) and every function can write it; the
dispatch gate's ``batch#<lane>#<batch>`` rank items would collide with ``batch#<name>`` for a batch
named like ``normal#x``, so progress has its own prefix.

Final statuses are counted one by one; open jobs by where they are: ``queued`` (QUEUED: waiting
in the pipeline) and ``at_fal`` (PENDING or SUBMITTED: dispatched, holding a fal slot), with
``open_jobs`` their sum (kept for readers from before the split, and the announcer's condition).
The dispatch moves a job from ``queued`` to ``at_fal`` inside its slot transaction
(dispatch/slots.py), which already was one TransactWriteItems: one more item, no more calls.
PENDING -> SUBMITTED changes no counter, so the submit path's bookkeeping stays a plain update.

A job counted before the split carries no ``counted_open`` mark: its open time is in
``open_jobs`` only, and its transitions move ``open_jobs`` only, so neither split counter ever
goes below what it counted.

Contention: a batch's progress item is hot, written by every dispatch and every end of its jobs;
concurrent transactions on it cancel each other (TransactionConflict) and are retried. The
dispatch's writes are bounded by fal's capacity (a fill takes at most FalConcurrency +
FalQueueHeadroom slots), and the ends by fal's throughput, so the extra writes stay bounded.
The slot transactions of one fill already share the budget's day and month counters, so its
dispatches of one batch add no new conflict among themselves; what is new is a dispatch meeting
an end of the same batch's job, each retried as before (dispatch/slots.py, jobs/repository.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pika_pipeline.jobs.job import plain
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES, JobStatus

PROGRESS_PREFIX = "progress#"
# Sparse indexes of the control table (only progress items have their keys):
# every batch by last activity (`pika-pipeline batches`), and the batches with activity not yet
# summarised, by last upload (the reconciler's announcements).
ACTIVITY_INDEX = "BatchesByActivity"
SUMMARY_DUE_INDEX = "BatchesToSummarise"
LISTED = "batch"  # the one partition of ACTIVITY_INDEX
DUE = "due"  # the one partition of SUMMARY_DUE_INDEX
DUE_MARKS = "due_marks"

QUEUED = "queued"  # waiting in the pipeline (QUEUED)
AT_FAL = "at_fal"  # dispatched, holding a fal slot (PENDING, SUBMITTED)
# On a job (jobs table) whose open time is counted in QUEUED or AT_FAL: every job created or
# put back in the queue since the split. Set once, never removed.
COUNTED_OPEN = "counted_open"

STATUS_PREFIX = "status_"
CODE_PREFIX = "code_"
FINAL_STATUSES = tuple(sorted(str(s) for s in TERMINAL_STATUSES))


def progress_key(batch: str) -> str:
    return f"{PROGRESS_PREFIX}{batch}"


def _by_where(status: JobStatus, amount: int) -> tuple[int, int]:
    """``amount`` on the split counter an open job in ``status`` is in: (queued, at_fal)."""
    return (amount, 0) if status == JobStatus.QUEUED else (0, amount)


@dataclass(frozen=True)
class CounterChange:
    """What one job's write does to its batch's counters."""

    batch: str
    jobs: int = 0  # a new job in the batch
    open_jobs: int = 0  # queued + at_fal (and jobs counted before the split)
    queued: int = 0
    at_fal: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    spent_usd: Decimal = Decimal(0)
    # A new upload: the batch's upload times move, and the batch is due for a summary again.
    upload_at: str | None = None
    # The batch is due for a (new) summary: an upload, or a job put back in the queue.
    reopens: bool = False

    def transact_item(self, table_name: str, *, now: str) -> dict[str, Any]:
        """The TransactWriteItems ``Update`` of the progress item (plain values)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}

        def name(attribute: str) -> str:
            placeholder = f"#p{len(names)}"
            names[placeholder] = attribute
            return placeholder

        def value(v: Any) -> str:
            placeholder = f":p{len(values)}"
            values[placeholder] = v
            return placeholder

        sets = [
            f"{name('batch')} = {value(self.batch)}",
            f"{name('listed')} = {value(LISTED)}",
            f"{name('last_activity_at')} = {value(now)}",
        ]
        adds: list[str] = []
        numbers: dict[str, Any] = {
            "jobs": self.jobs,
            "open_jobs": self.open_jobs,
            QUEUED: self.queued,
            AT_FAL: self.at_fal,
        }
        numbers |= {f"{STATUS_PREFIX}{s}": n for s, n in self.statuses.items()}
        numbers |= {f"{CODE_PREFIX}{c}": n for c, n in self.codes.items()}
        if self.spent_usd:
            numbers["spent_usd"] = self.spent_usd
        if self.upload_at or self.reopens:
            # Counts the writes that made the batch due: the announcer's summary settles the due
            # mark only if none came while it was publishing (batches/announcer.py).
            numbers[DUE_MARKS] = 1
        for attribute, amount in numbers.items():
            if amount:
                adds.append(f"{name(attribute)} {value(amount)}")
        if self.upload_at:
            first = name("first_upload_at")
            sets.append(f"{first} = if_not_exists({first}, {value(self.upload_at)})")
            sets.append(f"{name('last_upload_at')} = {value(self.upload_at)}")
        if self.upload_at or self.reopens:
            sets.append(f"{name('summary_due')} = {value(DUE)}")
        expression = "SET " + ", ".join(sets)
        if adds:
            expression += " ADD " + ", ".join(adds)
        return {
            "Update": {
                "TableName": table_name,
                "Key": {"pk": progress_key(self.batch)},
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }


def new_job(
    batch: str, *, upload_at: str, status: JobStatus, error_code: str = ""
) -> CounterChange:
    """A new upload's job: waiting (open, and marked ``counted_open``), or rejected at once."""
    if status in TERMINAL_STATUSES:
        return CounterChange(
            batch=batch,
            jobs=1,
            statuses={str(status): 1},
            codes={error_code: 1} if error_code else {},
            upload_at=upload_at,
        )
    queued, at_fal = _by_where(status, 1)
    return CounterChange(
        batch=batch, jobs=1, open_jobs=1, queued=queued, at_fal=at_fal, upload_at=upload_at
    )


def dispatched(batch: str) -> CounterChange:
    """A waiting job taking a fal slot (QUEUED -> PENDING) that is counted by where it is."""
    return CounterChange(batch=batch, queued=-1, at_fal=1)


def finished(
    batch: str,
    target: JobStatus,
    *,
    was: JobStatus,
    counted_open: bool,
    error_code: str = "",
    spent_usd: Decimal = Decimal(0),
) -> CounterChange:
    """An open job (in ``was``) reaching a final status. ``counted_open``: the job carries the
    mark, so it leaves its split counter too (else only ``open_jobs``, as it was counted)."""
    queued, at_fal = _by_where(was, -1) if counted_open else (0, 0)
    return CounterChange(
        batch=batch,
        open_jobs=-1,
        queued=queued,
        at_fal=at_fal,
        statuses={str(target): 1},
        codes={error_code: 1} if error_code else {},
        spent_usd=spent_usd,
    )


def reopened(
    batch: str,
    *,
    was: JobStatus,
    was_code: str,
    target: JobStatus,
    error_code: str = "",
    spent_usd: Decimal = Decimal(0),
) -> CounterChange:
    """A final job moving again (FAILED before fal answered: a late result, or a re-drive).
    Back in the queue, it is counted by where it is (its write sets ``counted_open``)."""
    statuses = {str(was): -1}
    codes = {was_code: -1} if was_code else {}
    if target in TERMINAL_STATUSES:
        statuses[str(target)] = statuses.get(str(target), 0) + 1
        if error_code:
            codes[error_code] = codes.get(error_code, 0) + 1
        return CounterChange(batch=batch, statuses=statuses, codes=codes, spent_usd=spent_usd)
    queued, at_fal = _by_where(target, 1)
    return CounterChange(
        batch=batch,
        open_jobs=1,
        queued=queued,
        at_fal=at_fal,
        statuses=statuses,
        codes=codes,
        reopens=True,
    )


@dataclass(frozen=True)
class BatchProgress:
    """A progress item read back, with the decision "is this batch finished"."""

    batch: str
    jobs: int
    open_jobs: int
    queued: int
    at_fal: int
    statuses: dict[str, int]
    failures: dict[str, int]
    spent_usd: Decimal
    first_upload_at: str | None
    last_upload_at: str | None
    last_activity_at: str | None
    summary_due: bool
    summaries: int
    # The summary a reconciler run is announcing, and until when its lease holds (announcer.py).
    announcing: int | None = None
    lease_until: float | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> BatchProgress:
        statuses = {s: int(item.get(f"{STATUS_PREFIX}{s}", 0)) for s in FINAL_STATUSES}
        failures = {
            str(k).removeprefix(CODE_PREFIX): int(v)
            for k, v in item.items()
            if str(k).startswith(CODE_PREFIX) and int(v)
        }
        return cls(
            batch=str(item.get("batch", str(item["pk"]).removeprefix(PROGRESS_PREFIX))),
            jobs=int(item.get("jobs", 0)),
            open_jobs=int(item.get("open_jobs", 0)),
            queued=int(item.get(QUEUED, 0)),
            at_fal=int(item.get(AT_FAL, 0)),
            statuses=statuses,
            failures=dict(sorted(failures.items())),
            spent_usd=Decimal(str(item.get("spent_usd", 0))),
            first_upload_at=_text(item.get("first_upload_at")),
            last_upload_at=_text(item.get("last_upload_at")),
            last_activity_at=_text(item.get("last_activity_at")),
            summary_due=item.get("summary_due") == DUE,
            summaries=int(item.get("summaries", 0)),
            announcing=int(item["announcing"]) if item.get("announcing") else None,
            lease_until=float(item["lease_until"]) if item.get("lease_until") else None,
        )

    @property
    def finished_jobs(self) -> int:
        return sum(self.statuses.values())

    @property
    def open_before_split(self) -> int:
        """Open jobs counted before the split: known to be open, not whether waiting or at fal."""
        return max(0, self.open_jobs - self.queued - self.at_fal)

    def being_announced(self, *, now_epoch: float) -> int | None:
        """The summary a run is announcing now (its lease holds), or None. A lease that ended
        without its summary settling (a crashed run) is none: the next run announces it."""
        if self.announcing is None or self.lease_until is None or self.lease_until < now_epoch:
            return None
        return self.announcing

    def is_finished(self, *, now_epoch: float, quiet_seconds: int) -> bool:
        """Every job final, and no upload for ``quiet_seconds``: the batch may be summarised
        (once per ``summary_due``: a later upload makes it due again)."""
        if not self.summary_due or self.open_jobs > 0 or not self.last_upload_at:
            return False
        quiet_since = datetime.fromisoformat(self.last_upload_at).timestamp()
        return now_epoch - quiet_since >= quiet_seconds

    def summary(self) -> dict[str, Any]:
        """The ``Batch Completed`` event's detail."""
        detail: dict[str, Any] = plain(
            {
                "batch": self.batch,
                "jobs": self.jobs,
                "counts": {s: n for s, n in self.statuses.items() if n},
                "failures": self.failures,
                "spent_usd": str(self.spent_usd),
                "first_upload_at": self.first_upload_at,
                "last_upload_at": self.last_upload_at,
                # Which summary of this batch (a later upload reopens it: 2, 3...).
                "summary": self.summaries,
            }
        )
        return detail


def _text(value: Any) -> str | None:
    return str(value) if value else None
