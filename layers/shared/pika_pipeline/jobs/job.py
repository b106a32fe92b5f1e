"""A job as read back from the jobs table, and the table's values as plain JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pika_pipeline.jobs.statuses import TERMINAL_STATUSES, JobStatus, reopenable_sources_of

# A QUEUED job's `waiting_for` while the spend guard holds it back (spend/budget.py): here, not
# there, so the webhook's repository does not load the budget gate at cold start.
WAITING_FOR_BUDGET = "budget"


def plain(value: Any) -> Any:
    """A DynamoDB item as plain JSON values: Decimals as numbers, sets as sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Job:
    """A job as read back from the table (a thin, typed view over the item)."""

    item: dict[str, Any]

    @property
    def job_id(self) -> str:
        return str(self.item["job_id"])

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.item["status"])

    @property
    def request_ids(self) -> frozenset[str]:
        return frozenset(self.item.get("request_ids", ()))

    @property
    def open_attempts(self) -> frozenset[str]:
        """Submit attempts that may have reached fal but never learned fal's request id."""
        return frozenset(self.item.get("open_attempts", ()))

    @property
    def awaits_result(self) -> bool:
        """Whether a result from fal may still finish the job: it is open, or the submit path
        failed it without ever learning of a fal request (fal may have queued one all the same:
        a call whose answer was lost before a later attempt gave up)."""
        return self.status not in TERMINAL_STATUSES or (
            not self.request_ids and self.status in reopenable_sources_of(JobStatus.COMPLETED)
        )

    @property
    def submitted_at(self) -> str | None:
        value = self.item.get("submitted_at")
        return str(value) if value else None

    @property
    def correlation_id(self) -> str | None:
        """The uploader's own reference for the job (``correlation-id`` metadata), if any."""
        value = self.item.get("correlation_id")
        return str(value) if value else None
