"""What fal charges per video, by endpoint: the one price table that the jobs' recorded price
(``price_usd``), the CLI's cost warnings, the cost benchmark and docs/OPERATIONS.md read.

Sources, read 2026-12-14 with the search tool (fal's model pages, the llms.txt of each):
- v2.1: "$0.4 per videos", whatever the resolution or duration
  (https://fal.ai/models/fal-ai/pika/v2.1/image-to-video/llms.txt).
- v2.2: "5 second video at 720p costs $0.20. 5 second video at 1080p costs $0.45."
  (https://fal.ai/models/fal-ai/pika/v2.2/image-to-video/llms.txt). The page gives no price for
  its other duration (10 s): the table charges it pro rata, twice the 5 s price, which errs on
  the side of spending less than the budget allows rather than more. Check it against fal's
  pricing estimate (Platform API ``/models/pricing/estimate``) before relying on 10 s at scale.
- turbo: "$0.2 per videos" (https://fal.ai/models/fal-ai/pika/v2/turbo/image-to-video/llms.txt).
fal may change them: update the table, not its readers. A negotiated rate is the deployment's
``FalPriceOverrideUSD`` (a flat price per video), not an edit here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from pika_pipeline.fal import pika
from pika_pipeline.fal.pika import Endpoint, Resolution

CHECKED_ON = "2026-12-14"


@dataclass(frozen=True)
class EndpointPrice:
    """One endpoint's price: per video of ``per_seconds`` (started blocks count whole), or per
    video whatever its duration when ``per_seconds`` is None."""

    by_resolution: dict[Resolution, Decimal]
    per_seconds: int | None
    source: str

    def usd(self, *, resolution: Resolution, duration: int) -> Decimal:
        blocks = 1 if self.per_seconds is None else math.ceil(duration / self.per_seconds)
        return self.by_resolution[resolution] * blocks


PRICES: dict[Endpoint, EndpointPrice] = {
    pika.ENDPOINT: EndpointPrice(
        by_resolution={"720p": Decimal("0.40"), "1080p": Decimal("0.40")},
        per_seconds=None,
        source="https://fal.ai/models/fal-ai/pika/v2.1/image-to-video/llms.txt",
    ),
    pika.V2_2: EndpointPrice(
        by_resolution={"720p": Decimal("0.20"), "1080p": Decimal("0.45")},
        per_seconds=5,
        source="https://fal.ai/models/fal-ai/pika/v2.2/image-to-video/llms.txt",
    ),
    pika.TURBO: EndpointPrice(
        by_resolution={"720p": Decimal("0.20"), "1080p": Decimal("0.20")},
        per_seconds=None,
        source="https://fal.ai/models/fal-ai/pika/v2/turbo/image-to-video/llms.txt",
    ),
}

# The video a price is quoted for when none is named: fal's defaults on all three endpoints.
DEFAULT_RESOLUTION: Resolution = "720p"
DEFAULT_DURATION = 5


def price_usd(
    endpoint: Endpoint,
    *,
    resolution: Resolution,
    duration: int,
    override_usd: Decimal = Decimal(0),
) -> Decimal:
    """What one video costs: the deployment's negotiated flat price if it has one (> 0), else
    the table's. KeyError for an endpoint or resolution the table does not know."""
    if override_usd > 0:
        return override_usd
    return PRICES[endpoint].usd(resolution=resolution, duration=duration)


def usd_per_video(endpoint: str) -> Decimal:
    """The price of fal's default video (720p, 5 s) from ``endpoint``; KeyError for an endpoint
    not in the table."""
    if not pika.is_endpoint(endpoint):
        raise KeyError(endpoint)
    return PRICES[endpoint].usd(resolution=DEFAULT_RESOLUTION, duration=DEFAULT_DURATION)
