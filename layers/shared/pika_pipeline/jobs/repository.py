"""The jobs table in DynamoDB: claims, conditional status changes, and lookups.

Every write is conditional, and they all lose the same way: a write whose condition fails raises
``JobConflict`` (another delivery moved the job on, or the job is gone); none returns a flag or
None for it. Callers that expect to lose sometimes catch it and say why. A table that stays
throttled past boto3's retries raises ``JobStoreBusy``, which callers retry later.

With the control table, a write that creates a job, puts it back in the queue or ends it is a
TransactWriteItems with the ADDs on its batch's progress counters (batches/progress.py): the
counters move exactly when the job's conditional write succeeds (the dispatch's move from
waiting to at fal is in its slot transaction, dispatch/slots.py). It replaces the job's update;
it adds no call on the paths that already knew the job (a result, the reconciler), and one read
on the rare ones that did not (a submit that fails for good, a stranded claim, a duplicate or
re-driven upload).

A write that makes a job final also marks its event as owed (jobs/event_outbox.py), in the same
write: the event that follows may be lost to a kill or a failed PutEvents, the mark is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, ConditionExpressionBuilder, Key
from botocore.exceptions import ClientError

from pika_pipeline.aws.errors import cancellation_reasons, error_code
from pika_pipeline.batches import progress
from pika_pipeline.errors import JobConflict, JobStoreBusy
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.event_outbox import (
    clear_event_due,
    event_due_attributes,
    mark_event_due,
)
from pika_pipeline.jobs.expressions import Update
from pika_pipeline.jobs.job import WAITING_FOR_BUDGET, Job, now_iso
from pika_pipeline.jobs.open_jobs import open_shard
from pika_pipeline.jobs.statuses import (
    AT_FAL_STATUSES,
    TERMINAL_STATUSES,
    JobStatus,
    reopenable_sources_of,
    sources_of,
)
from pika_pipeline.jobs.store_errors import RETRY_LATER_CODES, jobs_table_errors

if TYPE_CHECKING:
    from boto3.dynamodb.conditions import ConditionBase
    from mypy_boto3_dynamodb.service_resource import Table

# fal request id (the first one each job learned) -> job id.
REQUEST_IDS_INDEX = "RequestIds"
# Set on every job created with batch counters: only its transitions move them (a job created
# before the counters existed would take from counters it never added to).
COUNTED = "counted"
# Concurrent transitions of one batch's jobs write the same progress item: DynamoDB cancels the
# loser of such a race (TransactionConflict), which is retried at once.
TRANSACTION_TRIES = 5


class JobRepository:
    def __init__(
        self,
        table: Callable[[], Table],
        *,
        retention_days: int = 0,
        control: Callable[[], Table] | None = None,
    ) -> None:
        # A factory, not a Table: records are processed on several threads and boto3 resources
        # must not be shared between threads.
        self._table_for_thread = table
        self._retention_seconds = retention_days * 86400
        # The control table, where the batches' progress counters live; None: not counted.
        self._control = control

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

        def queued() -> Update:
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
            # A FAILED job put back in the queue owes no Video Failed any more (event_outbox.py).
            return clear_event_due(update)

        # Only a job fal never accepted is queued again (the table's reopenings before fal).
        never_reached_fal = _status_in(reopenable_sources_of(JobStatus.QUEUED)) & Attr(
            "error_code"
        ).eq(ErrorCode.FAL_UNAVAILABLE)
        batch = item.get("batch")
        if self._control is None or batch is None:
            with jobs_table_errors(f"job {job_id} already exists"):
                self._table.update_item(
                    Key={"job_id": job_id},
                    ConditionExpression=Attr("job_id").not_exists()
                    | (Attr("request_id").not_exists() & never_reached_fal),
                    **queued().arguments(),
                )
            return
        # A new job and a re-queued one count differently, so they are two writes: the new
        # job's first (the common case), then, only if the job exists, the re-queue's.
        try:
            self._transact(
                self._job_update(
                    job_id,
                    queued().set(COUNTED, True).set(progress.COUNTED_OPEN, True),
                    Attr("job_id").not_exists(),
                ),
                progress.new_job(str(batch), upload_at=queued_at, status=JobStatus.QUEUED),
                what=f"job {job_id} already exists",
            )
            return
        except JobConflict:
            existing = self.get(job_id)
        if existing is None or COUNTED not in existing.item:
            # Gone meanwhile, or created before the counters: as before, without them.
            with jobs_table_errors(f"job {job_id} already exists"):
                self._table.update_item(
                    Key={"job_id": job_id},
                    ConditionExpression=Attr("request_id").not_exists()
                    & never_reached_fal
                    & Attr(COUNTED).not_exists(),
                    **queued().arguments(),
                )
            return
        # Back in the queue, it is counted by where it is, even if it was counted before the
        # split: as a final job it was in no open counter.
        self._transact(
            self._job_update(
                job_id,
                queued().set(progress.COUNTED_OPEN, True),
                Attr("request_id").not_exists() & never_reached_fal,
            ),
            progress.reopened(
                str(existing.item.get("batch", batch)),
                was=JobStatus.FAILED,
                was_code=ErrorCode.FAL_UNAVAILABLE,
                target=JobStatus.QUEUED,
            ),
            what=f"job {job_id} already exists",
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

    def cancel_waiting(self, job_id: str, *, by: str, message: str) -> Job:
        """QUEUED -> CANCELLED (an operator's ``cancel`` of a job that never met fal); raises
        JobConflict when it no longer waits (dispatched, or cancelled, in the meantime)."""
        update = (
            Update()
            .set("status", JobStatus.CANCELLED)
            .set("error_code", ErrorCode.CANCELLED)
            .set("error_message", message)
            .set("updated_at", now_iso())
            .set("cancelled_by", by)
            .remove("queue_lane", "queue_order", "queue_position", "estimated_start_at")
        )
        mark_event_due(update, job_id, now_epoch=int(time.time()))
        what = f"job {job_id} no longer waits"
        current = self.get(job_id) if self._control is not None else None
        if current is not None and COUNTED in current.item:
            self._transact(
                self._job_update(
                    job_id,
                    update,
                    _status_is(JobStatus.QUEUED)
                    & Attr(COUNTED).exists()
                    & _counted_open_as_read(current),
                ),
                progress.finished(
                    str(current.item.get("batch", "")),
                    JobStatus.CANCELLED,
                    was=JobStatus.QUEUED,
                    counted_open=progress.COUNTED_OPEN in current.item,
                    error_code=ErrorCode.CANCELLED,
                ),
                what=what,
            )
            return Job(update.applied_to(current.item))
        with jobs_table_errors(what):
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=_status_is(JobStatus.QUEUED),
                ReturnValues="ALL_NEW",
                **update.arguments(),
            )["Attributes"]
        return Job(attrs)

    def set_queue_position(
        self,
        job_id: str,
        *,
        position: int,
        estimated_start_at: str | None,
        waiting_for_budget: bool | None = None,
    ) -> None:
        """Shows a waiting job's place, and with ``waiting_for_budget`` whether it waits for
        budget rather than for a slot (None leaves that as it is); raises JobConflict when it
        left the queue meanwhile."""
        update = Update().set("queue_position", position)
        if estimated_start_at:
            update.set("estimated_start_at", estimated_start_at)
        else:
            update.remove("estimated_start_at")
        if waiting_for_budget:
            update.set("waiting_for", WAITING_FOR_BUDGET)
        elif waiting_for_budget is not None:
            update.remove("waiting_for")
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
        stored = {
            **item,
            "status": JobStatus.REJECTED,
            "created_at": now,
            "updated_at": now,
            **event_due_attributes(str(item["job_id"]), now_epoch=int(time.time())),
        }
        if self._retention_seconds:
            stored["expires_at"] = int(time.time()) + self._retention_seconds
        batch = item.get("batch")
        if self._control is None or batch is None:
            # A rejection before the upload's batch was known is in no batch's counts.
            with jobs_table_errors(f"job {item['job_id']} already exists"):
                self._table.put_item(Item=stored, ConditionExpression=Attr("job_id").not_exists())
            return stored
        stored[COUNTED] = True
        condition = ConditionExpressionBuilder().build_expression(Attr("job_id").not_exists())
        self._transact(
            {
                "Put": {
                    "TableName": self._table.name,
                    "Item": stored,
                    "ConditionExpression": condition.condition_expression,
                    "ExpressionAttributeNames": condition.attribute_name_placeholders,
                }
            },
            progress.new_job(
                str(batch),
                upload_at=now,
                status=JobStatus.REJECTED,
                error_code=str(item.get("error_code", "")),
            ),
            what=f"job {item['job_id']} already exists",
        )
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
        mark_event_due(update, job_id, now_epoch=now_epoch)
        current = self.get(job_id) if self._control is not None else None
        if current is not None and COUNTED in current.item:
            self._transact(
                self._job_update(
                    job_id, update, _crashed_claim(now_epoch) & _counted_open_as_read(current)
                ),
                progress.finished(
                    str(current.item.get("batch", "")),
                    JobStatus.REJECTED,
                    was=JobStatus.PENDING,
                    counted_open=progress.COUNTED_OPEN in current.item,
                    error_code=code,
                ),
                what=f"job {job_id} is not a stranded claim",
            )
            return Job(update.applied_to(current.item))
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

    def record_extra_request(self, job_id: str, request_id: str, *, attempt: str | None) -> None:
        """Books a request fal made for an open attempt of an already finished job (an answer
        that was lost, then a second call): the job keeps its result and learns the id. Raises
        JobConflict when the attempt was closed meanwhile.

        ``attempt`` None: a request the reconciler found in fal's history beside the one it
        adopted (its attempt unknown, and already closed by the adoption); the job must have
        recorded a request already."""
        update = (
            Update()
            .set("updated_at", now_iso())
            .set_if_absent("request_id", request_id)
            .add("request_ids", {request_id})
        )
        condition: ConditionBase
        if attempt is None:
            condition = Attr("request_id").exists()
            what = f"job {job_id} has no request to keep"
        else:
            update.delete("open_attempts", {attempt})
            condition = Attr("open_attempts").contains(attempt)
            what = f"attempt {attempt} of job {job_id} is already answered"
        with jobs_table_errors(what):
            self._table.update_item(
                Key={"job_id": job_id}, ConditionExpression=condition, **update.arguments()
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
        current: Job | None = None,
    ) -> Job:
        """Moves the job to ``target`` if the transition table allows it from its current status.

        ``close_attempt`` marks a submit attempt as answered (and, with ``attempt_must_be_open``,
        requires that nobody answered it first). ``reopen_failed_submit`` also lets a result
        finish a job the submit path failed without any request id (``Job.awaits_result``).
        ``current``: the job as the caller read it (its batch, and where the move starts from);
        without it, a move to a final status reads the job first.

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
        attempt_open = (
            Attr("open_attempts").contains(close_attempt)
            if close_attempt and attempt_must_be_open
            else None
        )
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
            # It owes its event until the notifier has it (event_outbox.py).
            mark_event_due(update, job_id, now_epoch=int(time.time()))
        if add_request_id:
            update.add("request_ids", {add_request_id})
        if close_attempt:
            update.delete("open_attempts", {close_attempt})
            if attempt_open is not None:
                condition = condition & attempt_open
        if self._control is not None and target in TERMINAL_STATUSES:
            job = current or self.get(job_id)
            if job is None:
                raise JobConflict(f"job {job_id} cannot move to {target}: it does not exist")
            if COUNTED in job.item:
                return self._counted_finish(
                    job, target, update, sources=sources, reopenable=reopenable, extra=attempt_open
                )
        with jobs_table_errors(f"job {job_id} cannot move to {target}"):
            attrs = self._table.update_item(
                Key={"job_id": job_id},
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
                **update.arguments(),
            )["Attributes"]
        return Job(attrs)

    def _counted_finish(
        self,
        job: Job,
        target: JobStatus,
        update: Update,
        *,
        sources: frozenset[JobStatus],
        reopenable: frozenset[JobStatus],
        extra: ConditionBase | None,
    ) -> Job:
        """A move to a final status with its batch's counters. The counters need where it starts
        from, so the condition names that: waiting (QUEUED) or at fal (PENDING, SUBMITTED: the
        counters do not tell them apart), of ``sources``, or the final status it is reopened
        from; and whether the job is counted by where it is (``counted_open``). A caller's stale
        view gets one more try from the job as it is now."""
        what = f"job {job.job_id} cannot move to {target}"
        for attempt in range(2):
            batch = str(job.item.get("batch", ""))
            code = str(update.value_of("error_code") or "")
            if job.status in reopenable:
                was_code = str(job.item.get("error_code", ""))
                same_code = (
                    Attr("error_code").eq(was_code) if was_code else Attr("error_code").not_exists()
                )
                condition: ConditionBase = (
                    _status_is(job.status) & Attr("request_ids").not_exists() & same_code
                )
                change = progress.reopened(
                    batch, was=job.status, was_code=was_code, target=target, error_code=code
                )
            else:
                starts = sources & _same_place(job.status)
                condition = _status_in(starts) if starts else Attr("job_id").not_exists()
                spent = Decimal(str(job.item.get("reserved_usd", 0)))
                change = progress.finished(
                    batch,
                    target,
                    was=job.status,
                    counted_open=progress.COUNTED_OPEN in job.item,
                    error_code=code,
                    spent_usd=spent,
                )
            condition = Attr(COUNTED).exists() & _counted_open_as_read(job) & condition
            if extra is not None:
                condition = condition & extra
            try:
                self._transact(self._job_update(job.job_id, update, condition), change, what=what)
            except JobConflict:
                fresh = self.get(job.job_id) if attempt == 0 else None
                if (
                    fresh is None
                    or fresh.status == job.status
                    or fresh.status not in sources | reopenable
                ):
                    raise
                job = fresh
                continue
            return Job(update.applied_to(job.item))
        raise JobConflict(what)

    def _job_update(self, job_id: str, update: Update, condition: ConditionBase) -> dict[str, Any]:
        """The job's update as a TransactWriteItems ``Update``: boto3 builds the condition's
        placeholders only for a top-level condition, so they are built and merged here."""
        built = ConditionExpressionBuilder().build_expression(condition)
        arguments = update.arguments()
        values = {**arguments.get("ExpressionAttributeValues", {})}
        values.update(built.attribute_value_placeholders)
        job_update: dict[str, Any] = {
            "TableName": self._table.name,
            "Key": {"job_id": job_id},
            "UpdateExpression": arguments["UpdateExpression"],
            "ConditionExpression": built.condition_expression,
            "ExpressionAttributeNames": {
                **arguments.get("ExpressionAttributeNames", {}),
                **built.attribute_name_placeholders,
            },
        }
        if values:
            job_update["ExpressionAttributeValues"] = values
        return {"Update": job_update}

    def _transact(
        self, job_write: dict[str, Any], change: progress.CounterChange, *, what: str
    ) -> None:
        """The job's write and its batch's counters, together or not at all."""
        assert self._control is not None
        items = [job_write, change.transact_item(self._control().name, now=now_iso())]
        client = self._table.meta.client
        for tries_left in range(TRANSACTION_TRIES - 1, -1, -1):
            try:
                # Plain values, not AttributeValues: the resource's client serialises them.
                client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
                return
            except ClientError as exc:
                code = error_code(exc)
                reasons = cancellation_reasons(exc)
                if code == "TransactionCanceledException" and reasons[:1] == [
                    "ConditionalCheckFailed"
                ]:
                    raise JobConflict(what) from exc
                if code == "TransactionCanceledException" and tries_left:
                    continue  # another transition of the same batch wrote its counters first
                if code in RETRY_LATER_CODES or code == "TransactionCanceledException":
                    raise JobStoreBusy(f"{what}: the jobs table is busy ({code})") from exc
                raise


def _crashed_claim(now_epoch: int) -> ConditionBase:
    """A dispatched job whose submit never recorded fal's answer and whose claim ran out."""
    return (
        _status_is(JobStatus.PENDING)
        & Attr("request_id").not_exists()
        & Attr("claim_expires_at").lt(now_epoch)
    )


def _same_place(status: JobStatus) -> frozenset[JobStatus]:
    """The statuses a job's batch counts in the same counter as ``status``."""
    if status in AT_FAL_STATUSES:
        return AT_FAL_STATUSES
    return frozenset({status})


def _counted_open_as_read(job: Job) -> ConditionBase:
    """The job is (or is not) counted by where it is, as read: its counters are computed so."""
    mark = Attr(progress.COUNTED_OPEN)
    return mark.exists() if progress.COUNTED_OPEN in job.item else mark.not_exists()


def _status_is(status: JobStatus) -> ConditionBase:
    return Attr("status").eq(str(status))


def _status_in(statuses: frozenset[JobStatus]) -> ConditionBase:
    return Attr("status").is_in(sorted(str(status) for status in statuses))
