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
    from pika_pipeline.config import SubmitServiceSettings
    from pika_pipeline.fal.gateway import FalGateway


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
