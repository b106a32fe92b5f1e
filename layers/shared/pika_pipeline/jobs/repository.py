"""The jobs table in DynamoDB: claims, conditional status changes, and lookups.

Every write is conditional, and they all lose the same way: a write whose condition fails raises
``JobConflict`` (another delivery moved the job on, or the job is gone); none returns a flag or
None for it. Callers that expect to lose sometimes catch it and say why. A table that stays
throttled past boto3's retries raises ``JobStoreBusy``, which callers retry later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from pika_pipeline.errors import JobConflict
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.expressions import Update
from pika_pipeline.jobs.job import Job, now_iso
from pika_pipeline.jobs.open_jobs import open_shard
from pika_pipeline.jobs.statuses import (
    TERMINAL_STATUSES,
    JobStatus,
    reopenable_sources_of,
    sources_of,
)
from pika_pipeline.jobs.store_errors import jobs_table_errors

if TYPE_CHECKING:
    from boto3.dynamodb.conditions import ConditionBase
    from mypy_boto3_dynamodb.service_resource import Table

# fal request id (the first one each job learned) -> job id.
REQUEST_IDS_INDEX = "RequestIds"


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
        with jobs_table_errors(f"reading job {job_id}"):
            item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return Job(item) if item else None

    def jobs_with_request(self, request_id: str) -> set[str]:
        """The jobs that recorded ``request_id`` as their fal request (normally one, or none)."""
        with jobs_table_errors(f"looking up fal request {request_id}"):
            response = self._table.query(
                IndexName=REQUEST_IDS_INDEX,
                KeyConditionExpression=Key("request_id").eq(request_id),
            )
        return {str(item["job_id"]) for item in response.get("Items", [])}

    def enqueue(self, item: dict[str, Any], *, lane: str, order: str, queued_at: str) -> None:
        """Creates the job QUEUED (waiting for a dispatch slot), or puts back in the queue one
        fal never accepted: FAILED ``fal_unavailable`` (a message re-driven from the dead-letter
        queue). Raises JobConflict when the job exists otherwise: a duplicate event for a QUEUED
        job does nothing, and a job with a request id is never submitted again.

        No TTL yet: retention counts from dispatch, so a job can wait longer than it.
        """
        job_id = str(item["job_id"])
        update = Update().set_all(
            {
                **{k: v for k, v in item.items() if k != "job_id"},
                "status": JobStatus.QUEUED,
                "queued_at": queued_at,
                "updated_at": now_iso(),
                # The sparse QueuedJobs index: present only while the job waits.
                "queue_lane": lane,
                "queue_order": order,
            }
        )
        # An update, not a put: a re-queued job keeps its history (attempts, created_at).
        update.set_if_absent("created_at", now_iso())
        update.remove("error_code", "error_message", "claim_expires_at", "slot")
        # Only a job fal never accepted is queued again (the table's reopenings before fal).
        never_reached_fal = _status_in(reopenable_sources_of(JobStatus.QUEUED)) & Attr(
            "error_code"
        ).eq(ErrorCode.FAL_UNAVAILABLE)
        with jobs_table_errors(f"job {job_id} already exists"):
            self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=Attr("job_id").not_exists()
                | (Attr("request_id").not_exists() & never_reached_fal),
                **update.arguments(),
            )

    def reclaim(
        self,
        job_id: str,
        *,
        attempt: str,
        now_epoch: int,
        claim_seconds: int,
        reconcile_after_seconds: int,
    ) -> Job:
        """Takes over a dispatched job whose submit crashed (its claim ran out before fal's
        request id was recorded); it keeps its slot. Raises JobConflict for anything else.

        The attempt stays open until fal's request id for it is recorded, so a result of a call
        whose answer was lost can still be recognised as this job's.
        """
        update = (
            Update()
            .set("claim_expires_at", now_epoch + claim_seconds)
            .set("updated_at", now_iso())
            .set("next_check_at", now_epoch + reconcile_after_seconds)
            .set("open_shard", open_shard(job_id))
            .add("open_attempts", {attempt})
        )
        with jobs_table_errors(f"job {job_id} is not a crashed claim"):
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=_crashed_claim(now_epoch),
                ReturnValues="ALL_NEW",
                **update.arguments(),
            )["Attributes"]
        return Job(attrs)

    def set_queue_position(
        self, job_id: str, *, position: int, estimated_start_at: str | None
    ) -> None:
        """Shows a waiting job's place; raises JobConflict when it left the queue meanwhile."""
        update = Update().set("queue_position", position)
        if estimated_start_at:
            update.set("estimated_start_at", estimated_start_at)
        else:
            update.remove("estimated_start_at")
        with jobs_table_errors(f"job {job_id} no longer waits"):
            self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=_status_is(JobStatus.QUEUED),
                **update.arguments(),
            )

    def release_claim(
        self, job_id: str, *, attempts_error: str, check_at: int | None = None
    ) -> None:
        """After a transient failure: let the next submit take the job over at once.

        ``check_at`` makes it due for the reconciler then (a dispatch that met a fal outage:
        the job holds a slot, which must not idle until its regular check).
        Raises JobConflict when the job moved on meanwhile (a webhook beat the failed call).
        """
        update = (
            Update()
            .set("claim_expires_at", 0)
            .set("last_error", attempts_error)
            .set("updated_at", now_iso())
            .add("attempts", 1)
        )
        if check_at is not None:
            update.set("next_check_at", check_at)
        with jobs_table_errors(f"job {job_id} is no longer a pending claim"):
            self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=_status_is(JobStatus.PENDING) & Attr("request_id").not_exists(),
                **update.arguments(),
            )

    def record_rejection(self, item: dict[str, Any]) -> dict[str, Any]:
        """Writes a REJECTED job; raises JobConflict when the upload already has a job."""
        now = now_iso()
        stored = {**item, "status": JobStatus.REJECTED, "created_at": now, "updated_at": now}
        if self._retention_seconds:
            stored["expires_at"] = int(time.time()) + self._retention_seconds
        with jobs_table_errors(f"job {item['job_id']} already exists"):
            self._table.put_item(Item=stored, ConditionExpression=Attr("job_id").not_exists())
        return stored

    def reject_stranded(self, job_id: str, *, now_epoch: int, code: str, message: str) -> Job:
        """Rejects a job whose claim ran out before fal was called and whose upload has become
        unusable since; raises JobConflict when the job is anything else (a live or a submitted
        one)."""
        update = (
            Update()
            .set("status", JobStatus.REJECTED)
            .set("error_code", code)
            .set("error_message", message)
            .set("updated_at", now_iso())
            .remove("open_shard", "next_check_at")
        )
        with jobs_table_errors(f"job {job_id} is not a stranded claim"):
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=_crashed_claim(now_epoch),
                ReturnValues="ALL_NEW",
                **update.arguments(),
            )["Attributes"]
        return Job(attrs)

    def record_request_id(self, job_id: str, request_id: str, *, attempt: str) -> Job:
        """Stores fal's request id for a submit attempt: PENDING becomes SUBMITTED; a job the
        webhook already finished keeps its status and just learns the id. Raises JobConflict
        when the job no longer exists (deleted after its retention): it is not written again."""
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
            pass  # already past PENDING: it learns the id without changing status
        update = (
            Update()
            .set_if_absent("submitted_at", now)
            .set_if_absent("request_id", request_id)
            .set("updated_at", now)
            .add("request_ids", {request_id})
            .delete("open_attempts", {attempt})
        )
        with jobs_table_errors(f"job {job_id} no longer exists"):
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=Attr("job_id").exists(),
                ReturnValues="ALL_NEW",
                **update.arguments(),
            )["Attributes"]
        return Job(attrs)

    def record_extra_request(self, job_id: str, request_id: str, *, attempt: str) -> None:
        """Books a request fal made for an open attempt of an already finished job (an answer
        that was lost, then a second call): the job keeps its result and learns the id. Raises
        JobConflict when the attempt was closed meanwhile."""
        update = (
            Update()
            .set("updated_at", now_iso())
            .set_if_absent("request_id", request_id)
            .add("request_ids", {request_id})
            .delete("open_attempts", {attempt})
        )
        with jobs_table_errors(f"attempt {attempt} of job {job_id} is already answered"):
            self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=Attr("open_attempts").contains(attempt),
                **update.arguments(),
            )

    def move_video(self, job_id: str, *, from_key: str, to_key: str) -> Job:
        """Records that a completed job's video moved from ``from_key`` to ``to_key`` (aside,
        for a newer upload of its key). Raises JobConflict when the record no longer names
        ``from_key``. Not a transition: the status stays COMPLETED."""
        update = Update().set("output_key", to_key).set("updated_at", now_iso())
        with jobs_table_errors(f"job {job_id}'s video is no longer at {from_key}"):
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=_status_is(JobStatus.COMPLETED)
                & Attr("output_key").eq(from_key),
                ReturnValues="ALL_NEW",
                **update.arguments(),
            )["Attributes"]
        return Job(attrs)

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
        attributes = attributes or {}
        update = Update().set("status", target).set("updated_at", now_iso()).set_all(attributes)
        if add_request_id and "request_id" not in attributes:
            # The first request id a job learns is also its `request_id` (the RequestIds index).
            update.set_if_absent("request_id", add_request_id)
        sources = sources_of(target)
        reopenable = reopenable_sources_of(target) if reopen_failed_submit else frozenset()
        if not sources and not reopenable:
            # Nothing moves there by a transition (QUEUED: only enqueue puts a job in the queue);
            # DynamoDB would refuse the empty IN as a malformed expression.
            raise JobConflict(f"job {job_id} cannot move to {target}")
        clauses = [_status_in(sources)] if sources else []
        if reopenable:
            clauses.append(_status_in(reopenable) & Attr("request_ids").not_exists())
            if target == JobStatus.COMPLETED:
                update.remove("error_code", "error_message")
        allowed = clauses[0] if len(clauses) == 1 else clauses[0] | clauses[1]
        condition = Attr("job_id").exists() & allowed
        if target in TERMINAL_STATUSES:
            # Leaves the reconciler's index (and the queue's, for a waiting job cancelled).
            update.remove(
                "open_shard",
                "next_check_at",
                "queue_lane",
                "queue_order",
                "queue_position",
                "estimated_start_at",
            )
        if add_request_id:
            update.add("request_ids", {add_request_id})
        if close_attempt:
            update.delete("open_attempts", {close_attempt})
            if attempt_must_be_open:
                condition = condition & Attr("open_attempts").contains(close_attempt)
        with jobs_table_errors(f"job {job_id} cannot move to {target}"):
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
                **update.arguments(),
            )["Attributes"]
        return Job(attrs)


def _crashed_claim(now_epoch: int) -> ConditionBase:
    """A dispatched job whose submit never recorded fal's answer and whose claim ran out."""
    return (
        _status_is(JobStatus.PENDING)
        & Attr("request_id").not_exists()
        & Attr("claim_expires_at").lt(now_epoch)
    )


def _status_is(status: JobStatus) -> ConditionBase:
    return Attr("status").eq(str(status))


def _status_in(statuses: frozenset[JobStatus]) -> ConditionBase:
    return Attr("status").is_in(sorted(str(status) for status in statuses))
