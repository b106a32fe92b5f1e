"""The spend ledger: what each UTC day and month has reserved for fal, and the refunds.

Counters live in the control table, one item per period: ``spend#day#YYYY-MM-DD`` and
``spend#month#YYYY-MM`` {reserved_usd, videos, refunded_usd, refunds}. ``reserved_usd`` is what
the period has spent or holds for jobs still at fal. A job's own item is its ledger entry:
``reserved_usd`` (while the reservation stands), ``reserved_day`` and ``reserved_month`` (the
periods it was counted in, kept for reports), ``refunded_usd`` once it was given back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pika_pipeline.aws.errors import cancellation_reasons, error_code
from pika_pipeline.batches import progress
from pika_pipeline.errors import JobStoreBusy
from pika_pipeline.jobs.job import now_iso
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES
from pika_pipeline.jobs.store_errors import RETRY_LATER_CODES
from pika_pipeline.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

# Shared with the CLI: {daily_usd, monthly_usd, updated_at, updated_by}.
BUDGET_ITEM = "budget"
# A refund racing reservations on the same counters may be cancelled (TransactionConflict).
REFUND_TRIES = 5
FINAL = frozenset(str(status) for status in TERMINAL_STATUSES)


def day_of(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def month_of(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m")


def day_key(day: str) -> str:
    return f"spend#day#{day}"


def month_key(month: str) -> str:
    return f"spend#month#{month}"


@dataclass(frozen=True)
class PeriodSpend:
    """What one day or month has reserved (spent, or held for jobs still at fal)."""

    reserved_usd: Decimal
    videos: int
    refunded_usd: Decimal
    refunds: int


def _period(item: dict[str, Any] | None) -> PeriodSpend:
    item = item or {}
    return PeriodSpend(
        reserved_usd=Decimal(str(item.get("reserved_usd", 0))),
        videos=int(item.get("videos", 0)),
        refunded_usd=Decimal(str(item.get("refunded_usd", 0))),
        refunds=int(item.get("refunds", 0)),
    )


class SpendLedger:
    """Reads the period counters and gives reservations back (refunds)."""

    def __init__(self, *, control: Callable[[], Table], jobs: Callable[[], Table]) -> None:
        self._control = control
        self._jobs = jobs

    def spent(self, *, day: str, month: str) -> tuple[PeriodSpend, PeriodSpend]:
        """The day's and the month's counters (consistent reads)."""
        table = self._control()
        response = table.meta.client.batch_get_item(
            RequestItems={
                table.name: {
                    "Keys": [{"pk": day_key(day)}, {"pk": month_key(month)}],
                    "ConsistentRead": True,
                }
            }
        )
        items = {str(i["pk"]): i for i in response.get("Responses", {}).get(table.name, [])}
        return _period(items.get(day_key(day))), _period(items.get(month_key(month)))

    def refund(self, job_id: str, *, reason: str) -> Decimal | None:
        """Gives the job's reservation back to the day and month it was made in, once.

        Returns the amount, or None when there is nothing to give back (never reserved, or
        refunded already: the job's ``reserved_usd`` is gone). The job's entry and both
        counters move in one transaction, conditional on the entry still being there.
        """
        item = self._jobs().get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if not item or "reserved_usd" not in item:
            return None
        amount = Decimal(str(item["reserved_usd"]))
        day, month = str(item["reserved_day"]), str(item["reserved_month"])
        counter = {
            "UpdateExpression": "ADD reserved_usd :minus, videos :less, refunded_usd :amount, "
            "refunds :one",
            "ExpressionAttributeValues": {
                ":minus": -amount,
                ":less": -1,
                ":amount": amount,
                ":one": 1,
            },
        }
        control = self._control().name
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._jobs().name,
                    "Key": {"job_id": job_id},
                    "UpdateExpression": "SET refunded_usd = :amount, refund_reason = :why "
                    "REMOVE reserved_usd",
                    "ConditionExpression": "reserved_usd = :amount",
                    "ExpressionAttributeValues": {":amount": amount, ":why": reason},
                }
            },
            {"Update": {"TableName": control, "Key": {"pk": day_key(day)}, **counter}},
            {"Update": {"TableName": control, "Key": {"pk": month_key(month)}, **counter}},
        ]
        if item.get("counted") and item.get("status") in FINAL:
            # The batch counted the reservation as spent when the job ended (jobs/repository.py);
            # a refund before that is simply not counted then.
            items.append(
                progress.CounterChange(
                    batch=str(item.get("batch", "")), spent_usd=-amount
                ).transact_item(control, now=now_iso())
            )
        for tries_left in range(REFUND_TRIES - 1, -1, -1):
            try:
                # Plain values, not AttributeValues: the resource's client serialises them.
                self._control().meta.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
                break
            except ClientError as exc:
                code = error_code(exc)
                reasons = cancellation_reasons(exc)
                if code == "TransactionCanceledException" and reasons[:1] == [
                    "ConditionalCheckFailed"
                ]:
                    logger.info("Refunded already", extra={"job_id": job_id})
                    return None
                # Another reservation or refund on the same counters at the same moment.
                if code == "TransactionCanceledException" and tries_left:
                    continue
                if code in RETRY_LATER_CODES or code == "TransactionCanceledException":
                    raise JobStoreBusy(f"refunding {job_id}: {code}") from exc
                raise
        logger.info(
            "Reservation refunded",
            extra={"job_id": job_id, "refunded_usd": str(amount), "reason": reason},
        )
        return amount
