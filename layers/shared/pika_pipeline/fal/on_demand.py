"""The fal gateway, built when a job first needs fal.

fal_client and httpx are among the heaviest imports of a cold start, and the fal key is a
Secrets Manager call: a container whose events are duplicates, rejected uploads or an idle
reconciler run needs neither, so neither is loaded at init. What this defers is measured by
`make bench` ("cold start: submit with nothing deferred", docs/PERFORMANCE.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from pika_pipeline.aws.secrets import read_fal_key

if TYPE_CHECKING:
    from pika_pipeline.config.reconciler import ReconcilerSettings
    from pika_pipeline.config.submit import SubmitServiceSettings
    from pika_pipeline.fal.gateway import FalGateway
    from pika_pipeline.fal.request_history import FalRequestHistory


def built_once[T](make: Callable[[], T]) -> Callable[[], T]:
    """A factory that builds on its first call and returns the same object after. Locked:
    several threads may ask at once (a fill submits on several), and one build means one read of
    the key."""
    building = threading.Lock()
    built: list[T] = []

    def get() -> T:
        with building:
            if not built:
                built.append(make())
            return built[0]

    return get


def fal_gateway_on_demand(settings: SubmitServiceSettings) -> Callable[[], FalGateway]:
    def make() -> FalGateway:
        from pika_pipeline.fal.gateway import FalGateway  # here, not at init: see the docstring

        return FalGateway(
            key=read_fal_key(settings.fal_key_secret_name),
            timeout_seconds=settings.fal_timeout_seconds,
            start_timeout_seconds=settings.fal_start_timeout_seconds,
            media_lifetime_seconds=settings.fal_media_lifetime_seconds,
        )

    return built_once(make)


def fal_history_on_demand(settings: ReconcilerSettings) -> Callable[[], FalRequestHistory]:
    """fal's request history, built when a crashed claim first needs it (the reconciler's)."""

    def make() -> FalRequestHistory:
        from pika_pipeline.fal.request_history import FalRequestHistory

        return FalRequestHistory(
            key=read_fal_key(settings.fal_key_secret_name),
            base_url=settings.fal_platform_api_url,
            timeout_seconds=settings.fal_timeout_seconds,
        )

    return built_once(make)
