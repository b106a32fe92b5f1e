"""The notifier's settings: Standard Webhooks deliveries of the completion events."""

from __future__ import annotations

from dataclasses import dataclass

from pika_pipeline.config.environment import (
    CommonSettings,
    ConfigurationError,
    host_list,
    non_empty,
    setting,
)


def _delays(value: str) -> tuple[int, ...]:
    return tuple(int(delay) for delay in value.split(",") if delay.strip())


@dataclass(frozen=True, kw_only=True)
class NotifierSettings(CommonSettings):
    """The notifier: Standard Webhooks deliveries of the completion events."""

    notify_url: str = setting("NOTIFY_URL", default="")
    callback_hosts: tuple[str, ...] = setting("CALLBACK_HOSTS", host_list, default=())
    notify_signing_secret: str = setting(
        "NOTIFY_SIGNING_SECRET", check=non_empty, rule="must not be empty"
    )
    notify_download_url_seconds: int = setting(
        "NOTIFY_DOWNLOAD_URL_SECONDS", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    # The wait after the 1st, 2nd... failed attempt; the last repeats until max_attempts.
    notify_retry_delays: tuple[int, ...] = setting(
        "NOTIFY_RETRY_DELAYS",
        _delays,
        check=lambda v: bool(v) and all(0 <= d <= 43200 for d in v),
        rule="must be comma-separated seconds, each from 0 to 43200",
    )
    # The queue's maxReceiveCount: the attempt after which the message is dead-lettered.
    notify_max_attempts: int = setting(
        "NOTIFY_MAX_ATTEMPTS", int, check=lambda v: v >= 1, rule="must be >= 1"
    )
    notify_connect_timeout_seconds: float = setting(
        "NOTIFY_CONNECT_TIMEOUT_SECONDS", float, default=3.0
    )
    notify_read_timeout_seconds: float = setting("NOTIFY_READ_TIMEOUT_SECONDS", float, default=10.0)

    def __post_init__(self) -> None:
        if self.notify_url and not self.notify_url.startswith("https://"):
            raise ConfigurationError(
                f"{type(self).__name__} is misconfigured: NOTIFY_URL must be an https URL"
            )
