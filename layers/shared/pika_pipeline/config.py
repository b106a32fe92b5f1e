"""Each function's configuration, read from its environment once and validated at cold start.

A missing or malformed variable fails the cold start with a message naming it, instead of a
function that half-works on a silent default. Optional knobs have documented defaults here.
Each function reads exactly the settings its object graph uses: what the submit path needs
(SubmitServiceSettings) and what recording fal's result needs (RecorderSettings) are groups the
three functions' settings are made of. A setting has one name from the template's parameter to
the code: ``ReconcileAfterSeconds`` is ``RECONCILE_AFTER_SECONDS`` is ``reconcile_after_seconds``.
Plain dataclasses rather than pydantic: the webhook's cold start races fal's 15 s delivery
timeout, and pydantic's import and model building were most of its cost (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, Self
from urllib.parse import urlsplit

from pika_pipeline.fal import pika
from pika_pipeline.fal.pika import ENDPOINT, ENDPOINTS, RESOLUTIONS, Endpoint, Resolution
from pika_pipeline.fal.prices import price_usd
from pika_pipeline.results.video_keys import (
    DEFAULT_TEMPLATE,
    InvalidVideoKeyTemplate,
    VideoKeyTemplate,
)

# The image URL is presigned once, before the submit's first POST to fal. fal_client's own
# retries of that POST fit in the submit function's timeout (210 s in template.yaml), and fal
# still has to download the image once the request starts: this much of the URL's lifetime is
# spent outside fal's queue wait, so fal's start_timeout leaves it out.
PRESIGN_MARGIN_SECONDS = 240

# fal retries a webhook "10 times in the span of 2 hours" (fal's webhook docs, as recorded in
# docs/reference platform facts 2026-12): its copy of a video must outlive that, and then the
# reconciler's recovery window, or a lost delivery could no longer be recovered.
FAL_WEBHOOK_RETRY_SECONDS = 2 * 3600
# Reconciler periods, past the deadline, for the reconciler to reach and copy a finished video.
RECOVERY_PERIODS = 3


class ConfigurationError(ValueError):
    """The environment does not configure the function; the message names every variable."""


def _env(
    name: str,
    parse: Callable[[str], Any] = str,
    *,
    default: Any = MISSING,
    check: Callable[[Any], bool] | None = None,
    rule: str = "",
) -> Any:
    metadata = {"env": name, "parse": parse, "check": check, "rule": rule}
    return field(default=default, metadata=metadata)


def _non_empty(value: str) -> bool:
    return bool(value)


def _url(value: str) -> bool:
    return re.match(r"^https?://", value) is not None


def _usd(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(value) from None


def _trusted_url(value: str) -> bool:
    """https with a host; plain http only to loopback (the local stack's emulator), where no one
    on the network path could answer in its place."""
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
    except ValueError:
        return False
    if not host or parts.username is not None or parts.password is not None:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and _is_loopback(host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hosts(value: str) -> tuple[str, ...]:
    return tuple(host.strip().lower() for host in value.split(",") if host.strip())


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    jobs_table: str = _env("JOBS_TABLE", check=_non_empty, rule="must not be empty")
    output_bucket: str = _env("OUTPUT_BUCKET", check=_non_empty, rule="must not be empty")
    webhook_token_secret: str = _env(
        "WEBHOOK_TOKEN_SECRET", check=_non_empty, rule="must not be empty"
    )
    event_bus_name: str = _env("EVENT_BUS_NAME", check=_non_empty, rule="must not be empty")
    # 0 keeps job records; otherwise DynamoDB's TTL removes them this many days after creation.
    job_retention_days: int = _env(
        "JOB_RETENTION_DAYS", int, default=0, check=lambda v: v >= 0, rule="must be >= 0"
    )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in fields(cls):
            meta = spec.metadata
            raw = source.get(meta["env"])
            if raw is None:
                if spec.default is MISSING:
                    problems.append(f"{meta['env']}: missing")
                continue
            try:
                value = meta["parse"](raw)
            except InvalidVideoKeyTemplate as exc:  # its message says what is wrong with it
                problems.append(f"{meta['env']}: {exc}")
                continue
            except ValueError:
                problems.append(f"{meta['env']}: cannot read {raw!r}")
                continue
            if meta["check"] is not None and not meta["check"](value):
                problems.append(f"{meta['env']}: {meta['rule']}, got {raw!r}")
                continue
            values[spec.name] = value
        if problems:
            raise ConfigurationError(f"{cls.__name__} is misconfigured: " + "; ".join(problems))
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class SubmitServiceSettings(CommonSettings):
    """What submitting an upload to fal needs: the submit function's and the reconciler's."""

    input_prefix: str = _env("INPUT_PREFIX")
    fal_key_secret_name: str = _env(
        "FAL_KEY_SECRET_NAME", check=_non_empty, rule="must not be empty"
    )
    webhook_url: str = _env("WEBHOOK_URL", check=_url, rule="must be an http(s) URL")
    # _env returns a dataclasses.field; ruff cannot see that the Literal alias is immutable.
    default_resolution: Resolution = _env(  # noqa: RUF009
        "DEFAULT_RESOLUTION",
        check=lambda v: v in RESOLUTIONS,
        rule=f"must be one of {', '.join(RESOLUTIONS)}",
    )
    default_duration: int = _env(
        "DEFAULT_DURATION", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    min_duration_seconds: int = _env(
        "MIN_DURATION_SECONDS", int, default=1, check=lambda v: v >= 1, rule="must be >= 1"
    )
    max_duration_seconds: int = _env(
        "MAX_DURATION_SECONDS", int, default=10, check=lambda v: v >= 1, rule="must be >= 1"
    )
    presign_expires_seconds: int = _env(
        "PRESIGN_EXPIRES_SECONDS",
        int,
        check=lambda v: v >= 300,
        rule="must be >= 300",  # fal must get some queue wait past PRESIGN_MARGIN_SECONDS
    )
    max_image_bytes: int = _env(
        "MAX_IMAGE_BYTES",
        int,
        default=20 * 1024 * 1024,
        check=lambda v: v >= 1,
        rule="must be >= 1",
    )
    fal_endpoint: Endpoint = _env(  # noqa: RUF009
        "FAL_ENDPOINT",
        default=ENDPOINT,
        check=pika.is_endpoint,
        rule=f"must be one of {', '.join(ENDPOINTS)}",
    )
    # A negotiated flat price per video, in place of the price table's; 0 uses the table.
    fal_price_override_usd: Decimal = _env(  # noqa: RUF009
        "FAL_PRICE_OVERRIDE_USD",
        _usd,
        default=Decimal(0),
        check=lambda v: v.is_finite() and v >= 0,
        rule="must be a price in USD >= 0",
    )
    # How long fal keeps its copy of a video (X-Fal-Object-Lifecycle-Preference); 0 sends no
    # preference, leaving fal's account setting in charge. At least the recovery window: see
    # minimum_media_lifetime_seconds.
    fal_media_lifetime_seconds: int = _env(
        "FAL_MEDIA_LIFETIME_SECONDS",
        int,
        default=86400,
        check=lambda v: v >= 0,
        rule="must be >= 0",
    )
    # The reconciler's schedule (ReconcileEveryMinutes): part of the window fal's copy must last.
    reconcile_every_minutes: int = _env(
        "RECONCILE_EVERY_MINUTES", int, default=5, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # Per HTTP attempt; fal_client retries on its own, so the Lambda timeout covers ~10 attempts.
    fal_timeout_seconds: float = _env(
        "FAL_TIMEOUT_SECONDS", float, default=10.0, check=lambda v: v > 0, rule="must be > 0"
    )
    # A job fal has not finished this long after submission is expired by the reconciler; fal
    # itself is told (start_timeout) to drop a request it has not started by then.
    job_deadline_seconds: int = _env(
        "JOB_DEADLINE_SECONDS", int, check=lambda v: v >= 2, rule="must be >= 2"
    )
    # A claimed job whose submit never finished (a crash) may be claimed again after this long;
    # longer than the function's timeout, so a live submit is never taken over.
    submit_claim_seconds: int = _env(
        "SUBMIT_CLAIM_SECONDS", int, default=300, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # When the reconciler first looks at a claimed job (and how long it waits between looks).
    reconcile_after_seconds: int = _env(
        "RECONCILE_AFTER_SECONDS", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # Hosts an upload's callback-url may name; empty turns per-upload callbacks off.
    callback_hosts: tuple[str, ...] = _env("CALLBACK_HOSTS", _hosts, default=())
    # The dispatch gate: slots, pause switch and fair-share counters live in this table.
    control_table: str = _env("CONTROL_TABLE", check=_non_empty, rule="must not be empty")
    # The fal account's concurrency limit, and how many more may wait in fal's own queue so a
    # freed slot never sits idle: at most their sum is ever outstanding at fal.
    fal_concurrency: int = _env("FAL_CONCURRENCY", int, check=lambda v: v >= 1, rule="must be >= 1")
    fal_queue_headroom: int = _env(
        "FAL_QUEUE_HEADROOM", int, check=lambda v: v >= 0, rule="must be >= 0"
    )
    # The spend guard's default limits in USD per UTC day and month (0: no limit); the control
    # table's `budget` item (pika-pipeline budget set) overrides them at run time.
    daily_budget_usd: Decimal = _env(  # noqa: RUF009
        "DAILY_BUDGET_USD",
        _usd,
        default=Decimal(0),
        check=lambda v: v.is_finite() and v >= 0,
        rule="must be an amount in USD >= 0",
    )
    monthly_budget_usd: Decimal = _env(  # noqa: RUF009
        "MONTHLY_BUDGET_USD",
        _usd,
        default=Decimal(0),
        check=lambda v: v.is_finite() and v >= 0,
        rule="must be an amount in USD >= 0",
    )

    def __post_init__(self) -> None:
        name = type(self).__name__
        # An upload without a duration gets the default: one outside the bounds would reject it.
        if not self.min_duration_seconds <= self.default_duration <= self.max_duration_seconds:
            raise ConfigurationError(
                f"{name} is misconfigured: DEFAULT_DURATION "
                f"({self.default_duration}) must lie within MIN_DURATION_SECONDS "
                f"({self.min_duration_seconds}) and MAX_DURATION_SECONDS "
                f"({self.max_duration_seconds})"
            )
        allowed = self.durations_allowed
        if self.default_duration not in allowed:
            raise ConfigurationError(
                f"{name} is misconfigured: DEFAULT_DURATION ({self.default_duration}) is not a "
                f"duration {self.fal_endpoint} accepts within MIN_DURATION_SECONDS and "
                "MAX_DURATION_SECONDS "
                f"({pika.describe_durations(allowed) if allowed else 'none'})"
            )
        lifetime, minimum = self.fal_media_lifetime_seconds, self.minimum_media_lifetime_seconds
        if lifetime and lifetime < minimum:
            raise ConfigurationError(
                f"{name} is misconfigured: FAL_MEDIA_LIFETIME_SECONDS ({lifetime}) must be at "
                f"least {minimum}: fal's 2 h of webhook retries ({FAL_WEBHOOK_RETRY_SECONDS}) "
                f"plus JOB_DEADLINE_SECONDS ({self.job_deadline_seconds}) plus {RECOVERY_PERIODS} "
                f"reconciler periods (RECONCILE_EVERY_MINUTES x 60 + RECONCILE_AFTER_SECONDS), "
                "or fal could delete a video before the pipeline has copied it"
            )

    @property
    def durations_allowed(self) -> tuple[int, ...]:
        """What an upload may ask for: the endpoint's durations within the deployment's bounds."""
        return pika.durations_allowed(
            self.fal_endpoint,
            min_duration_seconds=self.min_duration_seconds,
            max_duration_seconds=self.max_duration_seconds,
        )

    @property
    def minimum_media_lifetime_seconds(self) -> int:
        """The shortest safe life of fal's copy of a video, counted from when fal made it.

        A delivery may be retried by fal for 2 h; past that the reconciler is the recovery, and it
        may reach a job as late as its deadline plus a few of its periods (a run every
        RECONCILE_EVERY_MINUTES, a job looked at every RECONCILE_AFTER_SECONDS) later.
        """
        period = self.reconcile_every_minutes * 60 + self.reconcile_after_seconds
        return FAL_WEBHOOK_RETRY_SECONDS + self.job_deadline_seconds + RECOVERY_PERIODS * period

    def price_usd(self, *, resolution: Resolution, duration: int) -> Decimal:
        """What one video of this deployment costs (the recorded ``price_usd``)."""
        return price_usd(
            self.fal_endpoint,
            resolution=resolution,
            duration=duration,
            override_usd=self.fal_price_override_usd,
        )

    @property
    def dispatch_slots(self) -> int:
        return self.fal_concurrency + self.fal_queue_headroom

    @property
    def fal_start_timeout_seconds(self) -> int:
        """How long fal may keep a request queued before it drops it unstarted (start_timeout).

        Never past the job's deadline, and never past the image URL's life: a request fal
        started after its URL expired would fail on the download (and still cost a call).
        Both bounds stay above the 1 s fal_client requires (deadline >= 2, presign >= 300).
        """
        return min(self.job_deadline_seconds, self.presign_expires_seconds - PRESIGN_MARGIN_SECONDS)


@dataclass(frozen=True, kw_only=True)
class SubmitSettings(SubmitServiceSettings):
    """The submit function: the submit path, fed by the queue (whose retries it paces)."""

    # The queue's maxReceiveCount: the attempt that gives up and records fal_unavailable.
    submit_max_attempts: int = _env(
        "SUBMIT_MAX_ATTEMPTS", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # fal outages are retried after base, 2x base, 4x base... seconds (SQS visibility).
    submit_retry_base_seconds: int = _env(
        "SUBMIT_RETRY_BASE_SECONDS", int, check=lambda v: v >= 0, rule="must be >= 0"
    )


@dataclass(frozen=True, kw_only=True)
class RecorderSettings(CommonSettings):
    """What recording fal's result needs (streaming the video into the output bucket): the
    webhook's and the reconciler's."""

    media_hosts: tuple[str, ...] = _env(
        "MEDIA_HOSTS", _hosts, check=bool, rule="must name at least one host"
    )
    output_prefix: str = _env("OUTPUT_PREFIX", default="videos/")
    # The readable key's {path} is the upload's folder below the input prefix.
    input_prefix: str = _env("INPUT_PREFIX")
    video_key_template: VideoKeyTemplate = _env(  # noqa: RUF009 (a frozen dataclass)
        "VIDEO_KEY_TEMPLATE", VideoKeyTemplate, default=VideoKeyTemplate(DEFAULT_TEMPLATE)
    )
    max_video_bytes: int = _env(
        "MAX_VIDEO_BYTES", int, default=2 * 1024**3, check=lambda v: v >= 1, rule="must be >= 1"
    )


@dataclass(frozen=True, kw_only=True)
class WebhookSettings(RecorderSettings):
    """The webhook function: verifying fal's deliveries, then recording them."""

    fal_jwks_url: str = _env(
        "FAL_JWKS_URL",
        check=_trusted_url,
        rule="must be an https URL (plain http only to a loopback host)",
    )
    # Required: without it any fal account's signature would be accepted (docs/SECURITY.md).
    fal_user_id: str = _env("FAL_USER_ID", check=_non_empty, rule="must not be empty")
    max_body_bytes: int = _env(
        "MAX_BODY_BYTES", int, default=256 * 1024, check=lambda v: v >= 1024, rule="must be >= 1024"
    )
    # fal signs with a ±300 s window in mind; 0 would refuse every delivery, hours would let a
    # captured delivery be replayed long after (the token and request id still bind it).
    timestamp_tolerance_seconds: int = _env(
        "TIMESTAMP_TOLERANCE_SECONDS",
        int,
        default=300,
        check=lambda v: 1 <= v <= 3600,
        rule="must be between 1 and 3600",
    )
    # Where a server-error result gives its reservation back (the spend ledger); "" for none.
    control_table: str = _env("CONTROL_TABLE", default="")


def _delays(value: str) -> tuple[int, ...]:
    return tuple(int(delay) for delay in value.split(",") if delay.strip())


@dataclass(frozen=True, kw_only=True)
class NotifierSettings(CommonSettings):
    """The notifier: Standard Webhooks deliveries of the completion events."""

    notify_url: str = _env("NOTIFY_URL", default="")
    callback_hosts: tuple[str, ...] = _env("CALLBACK_HOSTS", _hosts, default=())
    notify_signing_secret: str = _env(
        "NOTIFY_SIGNING_SECRET", check=_non_empty, rule="must not be empty"
    )
    notify_download_url_seconds: int = _env(
        "NOTIFY_DOWNLOAD_URL_SECONDS", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # The wait after the 1st, 2nd... failed attempt; the last repeats until max_attempts.
    notify_retry_delays: tuple[int, ...] = _env(
        "NOTIFY_RETRY_DELAYS",
        _delays,
        check=lambda v: bool(v) and all(0 <= d <= 43200 for d in v),
        rule="must be comma-separated seconds, each from 0 to 43200",
    )
    # The queue's maxReceiveCount: the attempt after which the message is dead-lettered.
    notify_max_attempts: int = _env(
        "NOTIFY_MAX_ATTEMPTS", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    notify_connect_timeout_seconds: float = _env(
        "NOTIFY_CONNECT_TIMEOUT_SECONDS", float, default=3.0
    )
    notify_read_timeout_seconds: float = _env("NOTIFY_READ_TIMEOUT_SECONDS", float, default=10.0)

    def __post_init__(self) -> None:
        if self.notify_url and not self.notify_url.startswith("https://"):
            raise ConfigurationError(
                f"{type(self).__name__} is misconfigured: NOTIFY_URL must be an https URL"
            )


@dataclass(frozen=True, kw_only=True)
class ReconcilerSettings(SubmitServiceSettings, RecorderSettings):
    """The reconciler submits crashed claims again and records results fal finished, so it needs
    both groups; it neither paces the queue's retries nor verifies deliveries."""

    reconcile_batch_size: int = _env(
        "RECONCILE_BATCH_SIZE", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # A batch is summarised once all its jobs are final and no upload came for this long.
    batch_quiet_seconds: int = _env(
        "BATCH_QUIET_SECONDS", int, default=300, check=lambda v: v >= 0, rule="must be >= 0"
    )
    # A final job's event the notifier has not acknowledged this long after it became due is
    # published again (jobs/event_outbox.py).
    event_grace_seconds: int = _env(
        "EVENT_GRACE_SECONDS", int, default=600, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # fal's Platform API, where the reconciler reads the request history of a crashed claim
    # (fal/request_history.py); the local stack points it at the emulator.
    fal_platform_api_url: str = _env(
        "FAL_PLATFORM_API_URL",
        default="https://api.fal.ai/v1",
        check=lambda v: v.startswith("https://"),
        rule="must be an https URL",
    )
