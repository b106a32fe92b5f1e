"""When a reservation is given back: only when fal is known not to charge.

- fal never accepted the request: the submit was answered with a refusal (HTTP 4xx other than
  422, or 5xx/429 on the last attempt) or never reached fal (no connection), so no request
  exists to be billed.
- fal failed it with a server error: "Server errors (HTTP 500+) are never charged"
  (fal FAQ, https://fal.ai/docs/model-apis/faq, "Do you charge for failed requests?", read
  2026-12-14; also docs.fal.ai model-endpoints/reliability: "Failed requests that return 5xx
  status codes are not billed").
- Everything else stays spent, including 422: "Client-side errors like invalid inputs (HTTP 422)
  may still be charged if a runner spent GPU time" (same FAQ entry). A submit whose answer was
  lost (a read timeout) may have created a request: it stays spent too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pika_pipeline.jobs.error_codes import ErrorCode

if TYPE_CHECKING:
    from pika_pipeline.errors import FalRequestFailed, FalUnavailable
    from pika_pipeline.fal.delivery import FalDelivery

_STATUS = re.compile(r"Invalid status code: (\d{3})")


def refused_submit_refunds(failure: FalRequestFailed) -> bool:
    """fal answered the submit with a final refusal: anything but a 422 created nothing."""
    return failure.code != ErrorCode.FAL_VALIDATION


def unavailable_submit_refunds(failure: FalUnavailable) -> bool:
    """The last attempt to submit found fal unavailable: refunded only if it created nothing."""
    return failure.created_nothing


def result_refunds(delivery: FalDelivery) -> bool:
    """An ERROR result whose status is a server error (5xx): fal does not charge it."""
    if delivery.status != "ERROR":
        return False
    match = _STATUS.search(delivery.error or "")
    return match is not None and int(match.group(1)) >= 500
