"""The reconciler's settings: both groups, plus its own schedule's knobs."""

from __future__ import annotations

from dataclasses import dataclass

from pika_pipeline.config.environment import setting
from pika_pipeline.config.recorder import RecorderSettings
from pika_pipeline.config.submit import SubmitServiceSettings


@dataclass(frozen=True, kw_only=True)
class ReconcilerSettings(SubmitServiceSettings, RecorderSettings):
    """The reconciler submits crashed claims again and records results fal finished, so it needs
    both groups; it neither paces the queue's retries nor verifies deliveries."""

    reconcile_batch_size: int = setting(
        "RECONCILE_BATCH_SIZE", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # A batch is summarised once all its jobs are final and no upload came for this long.
    batch_quiet_seconds: int = setting(
        "BATCH_QUIET_SECONDS", int, default=300, check=lambda v: v >= 0, rule="must be >= 0"
    )
    # A final job's event the notifier has not acknowledged this long after it became due is
    # published again (jobs/event_outbox.py).
    event_grace_seconds: int = setting(
        "EVENT_GRACE_SECONDS", int, default=600, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # fal's Platform API, where the reconciler reads the request history of a crashed claim
    # (fal/request_history.py); the local stack points it at the emulator.
    fal_platform_api_url: str = setting(
        "FAL_PLATFORM_API_URL",
        default="https://api.fal.ai/v1",
        check=lambda v: v.startswith("https://"),
        rule="must be an https URL",
    )
