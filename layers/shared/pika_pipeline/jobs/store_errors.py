"""What a failed call to the jobs table means in the domain: the one place that maps it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import ClientError

from pika_pipeline.aws.errors import error_code
from pika_pipeline.errors import JobConflict, JobStoreBusy

# DynamoDB asking to slow down, or an item locked by a transaction: boto3 retried them already,
# and waiting longer is the only thing that helps.
RETRY_LATER_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
    }
)


@contextmanager
def jobs_table_errors(what: str) -> Iterator[None]:
    """Raises JobConflict for a lost condition and JobStoreBusy for throttling; other AWS errors
    (a missing table, denied access) pass through unchanged: no retry would fix them."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code == "ConditionalCheckFailedException":
            raise JobConflict(what) from exc
        if code in RETRY_LATER_CODES:
            raise JobStoreBusy(f"{what}: the jobs table is busy ({code})") from exc
        raise
