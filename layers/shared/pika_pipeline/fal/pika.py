"""What fal's Pika image-to-video endpoints accept, where the pipeline's settings, checks, CLI
and the emulator need the same rules: one small table, one row per endpoint (FalEndpoint).

Sources (read 2026-12 with the search tool; fal's model pages, the llms.txt of each):
https://fal.ai/models/fal-ai/pika/v2.1/image-to-video/llms.txt,
https://fal.ai/models/fal-ai/pika/v2.2/image-to-video/llms.txt,
https://fal.ai/models/fal-ai/pika/v2/turbo/image-to-video/llms.txt.
All three take the same fields (image_url, prompt, seed, negative_prompt, resolution 720p|1080p,
duration); v2.1 and turbo document duration as a bare integer (default 5, no bounds: the
deployment's MinDurationSeconds/MaxDurationSeconds bound it), v2.2 as an enum of 5 or 10.
Prices live beside this table, in ``fal.prices``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeIs, get_args

Endpoint = Literal[
    "fal-ai/pika/v2.1/image-to-video",
    "fal-ai/pika/v2.2/image-to-video",
    "fal-ai/pika/v2/turbo/image-to-video",
]
ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)
# The default (FalEndpoint), and the endpoint of every job recorded before jobs named theirs.
ENDPOINT: Endpoint = "fal-ai/pika/v2.1/image-to-video"
V2_2: Endpoint = "fal-ai/pika/v2.2/image-to-video"
TURBO: Endpoint = "fal-ai/pika/v2/turbo/image-to-video"

Resolution = Literal["720p", "1080p"]
RESOLUTIONS: tuple[Resolution, ...] = get_args(Resolution)


@dataclass(frozen=True)
class EndpointRules:
    """What one endpoint accepts, beyond the fields all three share."""

    # None: any whole number of seconds (the deployment's bounds decide).
    durations: frozenset[int] | None
    resolutions: tuple[Resolution, ...]


RULES: dict[Endpoint, EndpointRules] = {
    ENDPOINT: EndpointRules(durations=None, resolutions=RESOLUTIONS),
    V2_2: EndpointRules(durations=frozenset({5, 10}), resolutions=RESOLUTIONS),
    TURBO: EndpointRules(durations=None, resolutions=RESOLUTIONS),
}


def is_endpoint(value: str) -> TypeIs[Endpoint]:
    return value in ENDPOINTS


def endpoint_of(item: Mapping[str, Any]) -> str:
    """The fal endpoint of a job: the one it recorded when it was queued, so a job queued or
    submitted before a change of FalEndpoint is sent, priced and settled where it was reserved.
    A job without one predates the recording, when v2.1 was the only endpoint the template could
    choose."""
    return str(item.get("fal_endpoint") or ENDPOINT)


def durations_allowed(
    endpoint: Endpoint, *, min_duration_seconds: int, max_duration_seconds: int
) -> tuple[int, ...]:
    """The durations an upload may ask for: the endpoint's own values within the deployment's
    bounds (MinDurationSeconds..MaxDurationSeconds apply to every endpoint, as a policy)."""
    rules = RULES[endpoint]
    bounded = range(min_duration_seconds, max_duration_seconds + 1)
    if rules.durations is None:
        return tuple(bounded)
    return tuple(sorted(d for d in rules.durations if d in bounded))


def describe_durations(allowed: tuple[int, ...]) -> str:
    """``between 1 and 10`` for a run of whole numbers, ``5 or 10`` for a few values."""
    if len(allowed) > 2 and allowed == tuple(range(allowed[0], allowed[-1] + 1)):
        return f"between {allowed[0]} and {allowed[-1]}"
    words = [str(d) for d in allowed]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
