"""The submit path's settings: the submit function's, and the reconciler's resubmits."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from pika_pipeline.config.environment import (
    CommonSettings,
    ConfigurationError,
    host_list,
    http_url,
    non_empty,
    setting,
    usd,
)
from pika_pipeline.fal import pika
from pika_pipeline.fal.pika import ENDPOINT, ENDPOINTS, RESOLUTIONS, Endpoint, Resolution
from pika_pipeline.fal.prices import price_usd

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


@dataclass(frozen=True, kw_only=True)
class SubmitServiceSettings(CommonSettings):
    """What submitting an upload to fal needs: the submit function's and the reconciler's."""

    input_prefix: str = setting("INPUT_PREFIX")
    fal_key_secret_name: str = setting(
        "FAL_KEY_SECRET_NAME", check=non_empty, rule="must not be empty"
    )
    webhook_url: str = setting("WEBHOOK_URL", check=http_url, rule="must be an http(s) URL")
    # setting() returns a dataclasses.field; ruff cannot see that the Literal alias is immutable.
    default_resolution: Resolution = setting(  # noqa: RUF009
        "DEFAULT_RESOLUTION",
        check=lambda v: v in RESOLUTIONS,
        rule=f"must be one of {', '.join(RESOLUTIONS)}",
    )
    default_duration: int = setting(
        "DEFAULT_DURATION", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    min_duration_seconds: int = setting(
        "MIN_DURATION_SECONDS", int, default=1, check=lambda v: v >= 1, rule="must be >= 1"
    )
    max_duration_seconds: int = setting(
        "MAX_DURATION_SECONDS", int, default=10, check=lambda v: v >= 1, rule="must be >= 1"
    )
    presign_expires_seconds: int = setting(
        "PRESIGN_EXPIRES_SECONDS",
        int,
        check=lambda v: v >= 300,
        rule="must be >= 300",  # fal must get some queue wait past PRESIGN_MARGIN_SECONDS
    )
    max_image_bytes: int = setting(
        "MAX_IMAGE_BYTES",
        int,
        default=20 * 1024 * 1024,
        check=lambda v: v >= 1,
        rule="must be >= 1",
    )
    fal_endpoint: Endpoint = setting(  # noqa: RUF009
        "FAL_ENDPOINT",
        default=ENDPOINT,
        check=pika.is_endpoint,
        rule=f"must be one of {', '.join(ENDPOINTS)}",
    )
    # A negotiated flat price per video, in place of the price table's; 0 uses the table.
    fal_price_override_usd: Decimal = setting(  # noqa: RUF009
        "FAL_PRICE_OVERRIDE_USD",
        usd,
        default=Decimal(0),
        check=lambda v: v.is_finite() and v >= 0,
        rule="must be a price in USD >= 0",
    )
    # How long fal keeps its copy of a video (X-Fal-Object-Lifecycle-Preference); 0 sends no
    # preference, leaving fal's account setting in charge. At least the recovery window: see
    # minimum_media_lifetime_seconds.
    fal_media_lifetime_seconds: int = setting(
        "FAL_MEDIA_LIFETIME_SECONDS",
        int,
        default=86400,
        check=lambda v: v >= 0,
        rule="must be >= 0",
    )
    # The reconciler's schedule (ReconcileEveryMinutes): part of the window fal's copy must last.
    reconcile_every_minutes: int = setting(
        "RECONCILE_EVERY_MINUTES", int, default=5, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # Per HTTP attempt; fal_client retries on its own, so the Lambda timeout covers ~10 attempts.
    fal_timeout_seconds: float = setting(
        "FAL_TIMEOUT_SECONDS", float, default=10.0, check=lambda v: v > 0, rule="must be > 0"
    )
    # A job fal has not finished this long after submission is expired by the reconciler; fal
    # itself is told (start_timeout) to drop a request it has not started by then.
    job_deadline_seconds: int = setting(
        "JOB_DEADLINE_SECONDS", int, check=lambda v: v >= 2, rule="must be >= 2"
    )
    # A claimed job whose submit never finished (a crash) may be claimed again after this long;
    # longer than the function's timeout, so a live submit is never taken over.
    submit_claim_seconds: int = setting(
        "SUBMIT_CLAIM_SECONDS", int, default=300, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # When the reconciler first looks at a claimed job (and how long it waits between looks).
    reconcile_after_seconds: int = setting(
        "RECONCILE_AFTER_SECONDS", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # Hosts an upload's callback-url may name; empty turns per-upload callbacks off.
    callback_hosts: tuple[str, ...] = setting("CALLBACK_HOSTS", host_list, default=())
    # The dispatch gate: slots, pause switch and fair-share counters live in this table.
    control_table: str = setting("CONTROL_TABLE", check=non_empty, rule="must not be empty")
    # The fal account's concurrency limit, and how many more may wait in fal's own queue so a
    # freed slot never sits idle: at most their sum is ever outstanding at fal.
    fal_concurrency: int = setting(
        "FAL_CONCURRENCY", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    fal_queue_headroom: int = setting(
        "FAL_QUEUE_HEADROOM", int, check=lambda v: v >= 0, rule="must be >= 0"
    )
    # The spend guard's default limits in USD per UTC day and month (0: no limit); the control
    # table's `budget` item (pika-pipeline budget set) overrides them at run time.
    daily_budget_usd: Decimal = setting(  # noqa: RUF009
        "DAILY_BUDGET_USD",
        usd,
        default=Decimal(0),
        check=lambda v: v.is_finite() and v >= 0,
        rule="must be an amount in USD >= 0",
    )
    monthly_budget_usd: Decimal = setting(  # noqa: RUF009
        "MONTHLY_BUDGET_USD",
        usd,
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
    submit_max_attempts: int = setting(
        "SUBMIT_MAX_ATTEMPTS", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # fal outages are retried after base, 2x base, 4x base... seconds (SQS visibility).
    submit_retry_base_seconds: int = setting(
        "SUBMIT_RETRY_BASE_SECONDS", int, check=lambda v: v >= 0, rule="must be >= 0"
    )
