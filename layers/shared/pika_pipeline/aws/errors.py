"""Reading AWS errors: the one place that knows where botocore keeps an error's code."""

from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call (``ConditionalCheckFailedException``, ``NoSuchKey``)."""
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code
