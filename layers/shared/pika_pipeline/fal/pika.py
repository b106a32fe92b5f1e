"""What fal's Pika v2.1 image-to-video endpoint accepts, where the pipeline's settings, checks
and CLI need the same list."""

from __future__ import annotations

from typing import Literal, get_args

# The endpoint the pipeline is built for (its arguments, its price); FAL_ENDPOINT may name another.
ENDPOINT = "fal-ai/pika/v2.1/image-to-video"

Resolution = Literal["720p", "1080p"]
RESOLUTIONS: tuple[Resolution, ...] = get_args(Resolution)
