"""The jobs table in DynamoDB: claims, conditional status changes, and lookups."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pika_pipeline.errors import JobConflict
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.statuses import (
    TERMINAL_STATUSES,
    JobStatus,
    reopenable_sources_of,
    sources_of,
)

# Open (non-final) jobs carry these two attributes, which make them appear in the sparse index
# the reconciler reads; a final status removes them.
OPEN_JOBS_INDEX = "OpenJobs"
OPEN_SHARDS = 4
# fal request id (the first one each job learned) -> job id.
REQUEST_IDS_INDEX = "RequestIds"


def open_shard(job_id: str) -> str:
    return f"open-{int(job_id[:8], 16) % OPEN_SHARDS}"


if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


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


class JobRepository:
    def __init__(self, table: Callable[[], Table], *, retention_days: int = 0) -> None:
        # A factory, not a Table: records are processed on several threads and boto3 resources
        # must not be shared between threads.
        self._table_for_thread = table
        self._retention_seconds = retention_days * 86400

    @property
    def _table(self) -> Table:
        return self._table_for_thread()

    def get(self, job_id: str) -> Job | None:
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return Job(item) if item else None

    def jobs_with_request(self, request_id: str) -> set[str]:
        """The jobs that recorded ``request_id`` as their fal request (normally one, or none)."""
        response = self._table.query(
            IndexName=REQUEST_IDS_INDEX,
            KeyConditionExpression="request_id = :rid",
            ExpressionAttributeValues={":rid": request_id},
        )
        return {str(item["job_id"]) for item in response.get("Items", [])}

    def claim(
        self,
        item: dict[str, Any],
        *,
        attempt: str,
        now_epoch: int,
        claim_seconds: int,
        reconcile_after_seconds: int,
    ) -> bool:
        """Creates the job as PENDING, or takes over one fal never accepted: a PENDING job whose
        claim ran out (a crashed submit), or one FAILED as ``fal_unavailable`` (a message re-driven
        from the dead-letter queue). False when the job exists otherwise: never a second submit.

        The attempt stays open until fal's request id for it is recorded, so a result of a call
        whose answer was lost can still be recognised as this job's.
        """
        fields = {
            **{k: v for k, v in item.items() if k != "job_id"},
            "status": JobStatus.PENDING,
            "claim_expires_at": now_epoch + claim_seconds,
            "updated_at": now_iso(),
            "open_shard": open_shard(str(item["job_id"])),
            # When the reconciler first looks at it, if nothing has finished it by then.
            "next_check_at": now_epoch + reconcile_after_seconds,
        }
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values: dict[str, Any] = {f":f{i}": value for i, value in enumerate(fields.values())}
        sets = [f"#f{i} = :f{i}" for i in range(len(fields))]
        sets.append("created_at = if_not_exists(created_at, :now)")
        if self._retention_seconds:  # DynamoDB's TTL deletes the record after the retention
            sets.append("expires_at = if_not_exists(expires_at, :expires)")
        # Only a job fal never accepted is claimed again (the table's reopenings before fal).
        reopenable = _placeholders("r", reopenable_sources_of(JobStatus.PENDING))
        try:
            # An update, not a put: a re-claimed job keeps its history (attempts, created_at).
            self._table.update_item(
                Key={"job_id": item["job_id"]},
                UpdateExpression="SET "
                + ", ".join(sets)
                + " REMOVE error_code, error_message ADD open_attempts :attempt",
                ConditionExpression=(
                    "attribute_not_exists(job_id) OR (attribute_not_exists(request_id) AND ("
                    "(#status = :pending AND claim_expires_at < :now_epoch) OR "
                    f"(#status IN ({', '.join(reopenable)}) AND error_code = :unavailable)))"
                ),
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues={
                    **values,
                    ":now": now_iso(),
                    ":pending": JobStatus.PENDING,
                    ":now_epoch": now_epoch,
                    **reopenable,
                    ":unavailable": ErrorCode.FAL_UNAVAILABLE,
                    ":attempt": {attempt},
                    **self._ttl_value(now_epoch),
                },
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def _ttl_value(self, now_epoch: int) -> dict[str, int]:
        return {":expires": now_epoch + self._retention_seconds} if self._retention_seconds else {}

    def release_claim(self, job_id: str, *, attempts_error: str) -> None:
        """After a transient failure: let the message's redelivery claim the job at once.

        A job that moved on meanwhile (a webhook beat the failed call) is left as it is.
        """
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=(
                    "SET claim_expires_at = :zero, last_error = :error, updated_at = :now "
                    "ADD attempts :one"
                ),
                ConditionExpression="#status = :pending AND attribute_not_exists(request_id)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":zero": 0,
                    ":error": attempts_error,
                    ":now": now_iso(),
                    ":one": 1,
                    ":pending": JobStatus.PENDING,
                },
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise

    def record_rejection(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """Writes a REJECTED job unless the upload already has a job (then returns None)."""
        now = now_iso()
        stored = {**item, "status": JobStatus.REJECTED, "created_at": now, "updated_at": now}
        if self._retention_seconds:
            stored["expires_at"] = int(time.time()) + self._retention_seconds
        try:
            self._table.put_item(Item=stored, ConditionExpression="attribute_not_exists(job_id)")
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        return stored

    def reject_stranded(
        self, job_id: str, *, now_epoch: int, code: str, message: str
    ) -> Job | None:
        """Rejects a job whose claim ran out before fal was called and whose upload has become
        unusable since; None when the job is anything else (a live or a submitted one)."""
        try:
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET #status = :rejected, error_code = :code, "
                "error_message = :message, updated_at = :now REMOVE open_shard, next_check_at",
                ConditionExpression="#status = :pending AND attribute_not_exists(request_id) "
                "AND claim_expires_at < :now_epoch",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":rejected": JobStatus.REJECTED,
                    ":pending": JobStatus.PENDING,
                    ":code": code,
                    ":message": message,
                    ":now": now_iso(),
                    ":now_epoch": now_epoch,
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        return Job(attrs)

    def record_request_id(self, job_id: str, request_id: str, *, attempt: str) -> Job:
        """Stores fal's request id for a submit attempt: PENDING becomes SUBMITTED; a job the
        webhook already finished keeps its status and just learns the id."""
        now = now_iso()
        try:
            return self.transition(
                job_id,
                JobStatus.SUBMITTED,
                attributes={"request_id": request_id, "submitted_at": now},
                add_request_id=request_id,
                close_attempt=attempt,
            )
        except JobConflict:
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET submitted_at = if_not_exists(submitted_at, :now), "
                "request_id = if_not_exists(request_id, :rid), updated_at = :now "
                "ADD request_ids :rids DELETE open_attempts :attempt",
                ExpressionAttributeValues={
                    ":now": now,
                    ":rid": request_id,
                    ":rids": {request_id},
                    ":attempt": {attempt},
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
            return Job(attrs)

    def record_extra_request(self, job_id: str, request_id: str, *, attempt: str) -> bool:
        """Books a request fal made for an open attempt of an already finished job (an answer
        that was lost, then a second call): the job keeps its result and learns the id. False
        when the attempt was closed meanwhile."""
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET updated_at = :now, "
                "request_id = if_not_exists(request_id, :rid) "
                "ADD request_ids :rids DELETE open_attempts :attempt",
                ConditionExpression="contains(open_attempts, :open)",
                ExpressionAttributeValues={
                    ":now": now_iso(),
                    ":rid": request_id,
                    ":rids": {request_id},
                    ":attempt": {attempt},
                    ":open": attempt,
                },
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

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
    ) -> Job:
        """Moves the job to ``target`` if the transition table allows it from its current status.

        ``close_attempt`` marks a submit attempt as answered (and, with ``attempt_must_be_open``,
        requires that nobody answered it first). ``reopen_failed_submit`` also lets a result
        finish a job the submit path failed without any request id (``Job.awaits_result``).

        Raises JobConflict when the job is missing or already elsewhere (a duplicate, a race lost).
        """
        values: dict[str, Any] = {":target": target, ":now": now_iso()}
        sets = ["#status = :target", "updated_at = :now"]
        for index, value in enumerate((attributes or {}).values()):
            values[f":a{index}"] = value
            sets.append(f"#a{index} = :a{index}")
        if add_request_id and "request_id" not in (attributes or {}):
            # The first request id a job learns is also its `request_id` (the RequestIds index).
            sets.append("request_id = if_not_exists(request_id, :rid)")
            values[":rid"] = add_request_id
        names = {"#status": "status"}
        names.update({f"#a{i}": name for i, name in enumerate((attributes or {}).keys())})
        allowed_sources = _placeholders("s", sources_of(target))
        values.update(allowed_sources)
        allowed = f"#status IN ({', '.join(allowed_sources)})"
        removes = []
        reopenable = _placeholders("r", reopenable_sources_of(target))
        if reopen_failed_submit and reopenable:
            allowed = (
                f"({allowed} OR (#status IN ({', '.join(reopenable)}) "
                "AND attribute_not_exists(request_ids)))"
            )
            values.update(reopenable)
            if target == JobStatus.COMPLETED:
                removes += ["error_code", "error_message"]
        condition = f"attribute_exists(job_id) AND {allowed}"
        if target in TERMINAL_STATUSES:
            removes += ["open_shard", "next_check_at"]  # leaves the reconciler's index
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        if add_request_id:
            expression += " ADD request_ids :rids"
            values[":rids"] = {add_request_id}
        if close_attempt:
            expression += " DELETE open_attempts :attempt"
            values[":attempt"] = {close_attempt}
            if attempt_must_be_open:
                condition += " AND contains(open_attempts, :open)"
                values[":open"] = close_attempt
        try:
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if _is_conditional_failure(exc):
                raise JobConflict(f"job {job_id} cannot move to {target}") from exc
            raise
        return Job(attrs)


class OpenJobs:
    """The reconciler's view: open jobs due for a check, oldest first, from the sparse index."""

    def __init__(self, table: Callable[[], Table]) -> None:
        self._table_for_thread = table

    def due(self, *, now_epoch: int, limit: int) -> list[Job]:
        jobs: list[Job] = []
        for shard in range(OPEN_SHARDS):
            if len(jobs) >= limit:
                break
            response = self._table_for_thread().query(
                IndexName=OPEN_JOBS_INDEX,
                KeyConditionExpression="open_shard = :shard AND next_check_at <= :now",
                ExpressionAttributeValues={":shard": f"open-{shard}", ":now": now_epoch},
                Limit=limit - len(jobs),
            )
            jobs.extend(Job(item) for item in response.get("Items", []))
        return jobs

    def check_again_at(self, job_id: str, when_epoch: int) -> None:
        """Moves a job to the back of the line, so a backlog cannot starve the rest."""
        try:
            self._table_for_thread().update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET next_check_at = :when",
                ConditionExpression="attribute_exists(open_shard)",
                ExpressionAttributeValues={":when": when_epoch},
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):  # finished meanwhile: nothing to reschedule
                raise


def _placeholders(prefix: str, statuses: frozenset[JobStatus]) -> dict[str, str]:
    """Expression values for a set of statuses, in a stable order: {":s0": "PENDING", ...}."""
    return {f":{prefix}{i}": str(status) for i, status in enumerate(sorted(statuses))}


def _is_conditional_failure(exc: ClientError) -> bool:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code == "ConditionalCheckFailedException"
