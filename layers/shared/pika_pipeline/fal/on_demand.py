"""The fal gateway, built when a job first needs fal.

fal_client and httpx are among the heaviest imports of a cold start, and the fal key is a
Secrets Manager call: a container whose events are duplicates, rejected uploads or an idle
reconciler run needs neither, so neither is loaded at init. What this defers is measured by
`make bench` ("cold start: submit with nothing deferred", docs/PERFORMANCE.md).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from pika_pipeline.aws.secrets import read_fal_key

if TYPE_CHECKING:
    from pika_pipeline.config import ReconcilerSettings, SubmitServiceSettings
    from pika_pipeline.fal.gateway import FalGateway
    from pika_pipeline.fal.request_history import FalRequestHistory


def fal_gateway_on_demand(settings: SubmitServiceSettings) -> Callable[[], FalGateway]:
    """A factory that builds the gateway on its first call and returns the same one after."""

    building = threading.Lock()

    @functools.cache
    def build() -> FalGateway:
        from pika_pipeline.fal.gateway import FalGateway  # here, not at init: see the docstring

        return FalGateway(
            key=read_fal_key(settings.fal_key_secret_name),
            timeout_seconds=settings.fal_timeout_seconds,
            start_timeout_seconds=settings.fal_start_timeout_seconds,
            media_lifetime_seconds=settings.fal_media_lifetime_seconds,
        )

    def gateway() -> FalGateway:
        # functools.cache does not stop two threads building at once (a fill submits on
        # several): one gateway, one read of the key.
        with building:
            return build()

    return gateway


def fal_history_on_demand(settings: ReconcilerSettings) -> Callable[[], FalRequestHistory]:
    """fal's request history, built when a crashed claim first needs it (the reconciler's)."""

    building = threading.Lock()

    @functools.cache
    def build() -> FalRequestHistory:
        from pika_pipeline.fal.request_history import FalRequestHistory

        return FalRequestHistory(
            key=read_fal_key(settings.fal_key_secret_name),
            base_url=settings.fal_platform_api_url,
            timeout_seconds=settings.fal_timeout_seconds,
        )

    def history() -> FalRequestHistory:
        with building:
            return build()

    return history
