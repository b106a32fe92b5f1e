"""Reading AWS errors: the one place that knows where botocore keeps an error's code."""

from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call (``ConditionalCheckFailedException``, ``NoSuchKey``)."""
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code


def cancellation_reasons(exc: ClientError) -> list[str]:
    """Why each item of a cancelled TransactWriteItems failed, in the items' order ("None" for
    an item that did not fail, as DynamoDB reports it)."""
    reasons = exc.response.get("CancellationReasons", [])
    return [str(r.get("Code", "None")) for r in reasons]
