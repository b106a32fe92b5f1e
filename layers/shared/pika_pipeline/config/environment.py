"""Reading a setting from the environment: the field spec, the parsers and checks, and the
settings every function shares."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, Self
from urllib.parse import urlsplit

from pika_pipeline.results.video_keys import InvalidVideoKeyTemplate


class ConfigurationError(ValueError):
    """The environment does not configure the function; the message names every variable."""


def setting(
    name: str,
    parse: Callable[[str], Any] = str,
    *,
    default: Any = MISSING,
    check: Callable[[Any], bool] | None = None,
    rule: str = "",
) -> Any:
    metadata = {"env": name, "parse": parse, "check": check, "rule": rule}
    return field(default=default, metadata=metadata)


def non_empty(value: str) -> bool:
    return bool(value)


def http_url(value: str) -> bool:
    return re.match(r"^https?://", value) is not None


def usd(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(value) from None


def trusted_url(value: str) -> bool:
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


def host_list(value: str) -> tuple[str, ...]:
    return tuple(host.strip().lower() for host in value.split(",") if host.strip())


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    jobs_table: str = setting("JOBS_TABLE", check=non_empty, rule="must not be empty")
    output_bucket: str = setting("OUTPUT_BUCKET", check=non_empty, rule="must not be empty")
    webhook_token_secret: str = setting(
        "WEBHOOK_TOKEN_SECRET", check=non_empty, rule="must not be empty"
    )
    event_bus_name: str = setting("EVENT_BUS_NAME", check=non_empty, rule="must not be empty")
    # 0 keeps job records; otherwise DynamoDB's TTL removes them this many days after creation.
    job_retention_days: int = setting(
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
