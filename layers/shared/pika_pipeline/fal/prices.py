"""What fal charges per video, by endpoint: the one price table the cost warnings and the cost
benchmark read.

Source: fal's model page for Pika v2.1 image-to-video, "$0.4 per videos"
(https://fal.ai/models/fal-ai/pika/v2.1/image-to-video/llms.txt), as recorded in the project's
fal protocol notes and re-checked with the platform facts of 2026-12. fal may change it: update
the table, not its readers.
"""

from __future__ import annotations

from decimal import Decimal

from pika_pipeline.fal import pika

USD_PER_VIDEO: dict[str, Decimal] = {
    pika.ENDPOINT: Decimal("0.40"),
}


def usd_per_video(endpoint: str) -> Decimal:
    """The price of one video from ``endpoint``; KeyError for an endpoint not in the table."""
    return USD_PER_VIDEO[endpoint]
