"""Each function's configuration, read from its environment once and validated at cold start.

A missing or malformed variable fails the cold start with a message naming it, instead of a
function that half-works on a silent default. Optional knobs have documented defaults here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    jobs_table: str = Field(alias="JOBS_TABLE", min_length=1)
    output_bucket: str = Field(alias="OUTPUT_BUCKET", min_length=1)
    webhook_token_secret: str = Field(alias="WEBHOOK_TOKEN_SECRET", min_length=1)
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)
    # 0 keeps job records; otherwise DynamoDB's TTL removes them this many days after creation.
    job_retention_days: int = Field(default=0, alias="JOB_RETENTION_DAYS", ge=0)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        return cls.model_validate(dict(os.environ if environ is None else environ))


class SubmitSettings(_Settings):
    input_prefix: str = Field(alias="INPUT_PREFIX")
    fal_key_secret: str = Field(alias="FAL_KEY_SECRET", min_length=1)
    webhook_url: str = Field(alias="WEBHOOK_URL", pattern=r"^https?://")
    default_resolution: Literal["720p", "1080p"] = Field(alias="DEFAULT_RESOLUTION")
    default_duration: int = Field(alias="DEFAULT_DURATION", ge=1)
    min_duration: int = Field(default=1, alias="MIN_DURATION", ge=1)
    max_duration: int = Field(default=10, alias="MAX_DURATION", ge=1)
    presign_expires_seconds: int = Field(alias="PRESIGN_EXPIRES_SECONDS", ge=60)
    max_image_bytes: int = Field(default=20 * 1024 * 1024, alias="MAX_IMAGE_BYTES", ge=1)
    fal_endpoint: str = Field(default="fal-ai/pika/v2.1/image-to-video", alias="FAL_ENDPOINT")
    # Per HTTP attempt; fal_client retries on its own, so the Lambda timeout covers ~10 attempts.
    fal_timeout_seconds: float = Field(default=10.0, alias="FAL_TIMEOUT_SECONDS", gt=0)
    # A claimed job whose submit never finished (a crash) may be claimed again after this long;
    # longer than the function's timeout, so a live submit is never taken over.
    claim_seconds: int = Field(default=300, alias="CLAIM_SECONDS", ge=1)
    # When the reconciler first looks at a claimed job (and how long it waits between looks).
    reconcile_after_seconds: int = Field(alias="RECONCILE_AFTER_SECONDS", ge=1)
    # The queue's maxReceiveCount: the attempt that gives up and records fal_unavailable.
    max_attempts: int = Field(alias="SUBMIT_MAX_ATTEMPTS", ge=1)
    # fal outages are retried after base, 2x base, 4x base... seconds (SQS visibility).
    retry_base_seconds: int = Field(alias="SUBMIT_RETRY_BASE_SECONDS", ge=0)


class WebhookSettings(_Settings):
    fal_jwks_url: str = Field(alias="FAL_JWKS_URL", pattern=r"^https?://")
    fal_user_id: str = Field(default="", alias="FAL_USER_ID")
    media_hosts: tuple[str, ...] = Field(alias="MEDIA_HOSTS")
    output_prefix: str = Field(default="videos/", alias="OUTPUT_PREFIX")
    max_body_bytes: int = Field(default=256 * 1024, alias="MAX_BODY_BYTES", ge=1024)
    max_video_bytes: int = Field(default=2 * 1024**3, alias="MAX_VIDEO_BYTES", ge=1)
    timestamp_tolerance_seconds: int = Field(default=300, alias="TIMESTAMP_TOLERANCE_SECONDS")

    @field_validator("media_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            hosts = tuple(h.strip().lower() for h in value.split(",") if h.strip())
            if not hosts:
                raise ValueError("MEDIA_HOSTS must name at least one host")
            return hosts
        return value


class ReconcilerSettings(SubmitSettings, WebhookSettings):
    """The reconciler submits (crashed claims) and records results, so it needs both."""

    deadline_seconds: int = Field(alias="JOB_DEADLINE_SECONDS", ge=1)
    max_jobs: int = Field(alias="RECONCILE_MAX_JOBS", ge=1)
