"""Recording fal's result (the webhook's and the reconciler's), and verifying its delivery."""

from __future__ import annotations

from dataclasses import dataclass

from pika_pipeline.config.environment import (
    CommonSettings,
    host_list,
    non_empty,
    setting,
    trusted_url,
)
from pika_pipeline.results.video_keys import DEFAULT_TEMPLATE, VideoKeyTemplate


@dataclass(frozen=True, kw_only=True)
class RecorderSettings(CommonSettings):
    """What recording fal's result needs (streaming the video into the output bucket): the
    webhook's and the reconciler's."""

    media_hosts: tuple[str, ...] = setting(
        "MEDIA_HOSTS", host_list, check=bool, rule="must name at least one host"
    )
    output_prefix: str = setting("OUTPUT_PREFIX", default="videos/")
    # The readable key's {path} is the upload's folder below the input prefix.
    input_prefix: str = setting("INPUT_PREFIX")
    video_key_template: VideoKeyTemplate = setting(  # noqa: RUF009 (a frozen dataclass)
        "VIDEO_KEY_TEMPLATE", VideoKeyTemplate, default=VideoKeyTemplate(DEFAULT_TEMPLATE)
    )
    max_video_bytes: int = setting(
        "MAX_VIDEO_BYTES", int, default=2 * 1024**3, check=lambda v: v >= 1, rule="must be >= 1"
    )


@dataclass(frozen=True, kw_only=True)
class WebhookSettings(RecorderSettings):
    """The webhook function: verifying fal's deliveries, then recording them."""

    fal_jwks_url: str = setting(
        "FAL_JWKS_URL",
        check=trusted_url,
        rule="must be an https URL (plain http only to a loopback host)",
    )
    # Required: without it any fal account's signature would be accepted (docs/SECURITY.md).
    fal_user_id: str = setting("FAL_USER_ID", check=non_empty, rule="must not be empty")
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES", int, default=256 * 1024, check=lambda v: v >= 1024, rule="must be >= 1024"
    )
    # fal signs with a ±300 s window in mind; 0 would refuse every delivery, hours would let a
    # captured delivery be replayed long after (the token and request id still bind it).
    timestamp_tolerance_seconds: int = setting(
        "TIMESTAMP_TOLERANCE_SECONDS",
        int,
        default=300,
        check=lambda v: 1 <= v <= 3600,
        rule="must be between 1 and 3600",
    )
    # Where a server-error result gives its reservation back (the spend ledger); "" for none.
    control_table: str = setting("CONTROL_TABLE", default="")
