"""Each function's settings, read from its environment and validated at cold start."""

from __future__ import annotations

import re
from dataclasses import MISSING, FrozenInstanceError, fields
from decimal import Decimal

import pytest

from local.template import load_template
from pika_pipeline.config.environment import CommonSettings, ConfigurationError
from pika_pipeline.config.notifier import NotifierSettings
from pika_pipeline.config.reconciler import ReconcilerSettings
from pika_pipeline.config.recorder import WebhookSettings
from pika_pipeline.config.submit import PRESIGN_MARGIN_SECONDS, SubmitSettings
from pika_pipeline.fal.pika import RESOLUTIONS

COMMON = {
    "JOBS_TABLE": "pika-jobs",
    "OUTPUT_BUCKET": "pika-output",
    "WEBHOOK_TOKEN_SECRET": "arn:aws:secretsmanager:us-east-1:111122223333:secret:token",
    "EVENT_BUS_NAME": "default",
}
SUBMIT = {
    **COMMON,
    "INPUT_PREFIX": "uploads/",
    "FAL_KEY_SECRET_NAME": "pika-pipeline/fal-key",
    "WEBHOOK_URL": "https://abc123.lambda-url.us-east-1.on.aws/",
    "DEFAULT_RESOLUTION": "720p",
    "DEFAULT_DURATION": "5",
    "PRESIGN_EXPIRES_SECONDS": "3600",
    "SUBMIT_MAX_ATTEMPTS": "5",
    "SUBMIT_RETRY_BASE_SECONDS": "30",
    "RECONCILE_AFTER_SECONDS": "900",
    "JOB_DEADLINE_SECONDS": "10800",
    "CONTROL_TABLE": "pika-control",
    "FAL_CONCURRENCY": "2",
    "FAL_QUEUE_HEADROOM": "1",
}
WEBHOOK = {
    **COMMON,
    "FAL_JWKS_URL": "https://rest.fal.ai/.well-known/jwks.json",
    "FAL_USER_ID": "github|1234567",
    "MEDIA_HOSTS": "v3.fal.media,v3b.fal.media",
    "INPUT_PREFIX": "uploads/",
}


def validation_error_text(
    settings: type[SubmitSettings | WebhookSettings], env: dict[str, str]
) -> str:
    with pytest.raises(ConfigurationError) as info:
        settings.from_environment(env)
    return str(info.value)


# --- submit -----------------------------------------------------------------------------------


def test_submit_settings_are_read_from_the_environment() -> None:
    settings = SubmitSettings.from_environment(SUBMIT)

    assert settings.jobs_table == "pika-jobs"
    assert settings.output_bucket == "pika-output"
    assert settings.input_prefix == "uploads/"
    assert settings.fal_key_secret_name == "pika-pipeline/fal-key"
    assert settings.webhook_url == "https://abc123.lambda-url.us-east-1.on.aws/"
    assert settings.default_resolution == "720p"
    assert settings.default_duration == 5
    assert settings.presign_expires_seconds == 3600
    assert (settings.submit_max_attempts, settings.submit_retry_base_seconds) == (5, 30)
    assert settings.control_table == "pika-control"
    assert (settings.fal_concurrency, settings.fal_queue_headroom) == (2, 1)
    # At most this many requests are ever outstanding at fal.
    assert settings.dispatch_slots == 3


def test_submit_settings_have_documented_defaults_for_optional_knobs() -> None:
    settings = SubmitSettings.from_environment(SUBMIT)

    assert (settings.min_duration_seconds, settings.max_duration_seconds) == (1, 10)
    assert settings.max_image_bytes == 20 * 1024 * 1024
    assert settings.fal_endpoint == "fal-ai/pika/v2.1/image-to-video"
    assert settings.fal_timeout_seconds == 10.0
    assert settings.submit_claim_seconds == 300
    assert settings.fal_price_override_usd == 0
    assert settings.fal_media_lifetime_seconds == 86400


def test_optional_submit_knobs_can_be_overridden() -> None:
    env = SUBMIT | {
        "MAX_DURATION_SECONDS": "8",
        "FAL_ENDPOINT": "fal-ai/pika/v2/turbo/image-to-video",
        "SUBMIT_CLAIM_SECONDS": "60",
    }

    settings = SubmitSettings.from_environment(env)

    assert (
        settings.max_duration_seconds,
        settings.fal_endpoint,
        settings.submit_claim_seconds,
    ) == (
        8,
        "fal-ai/pika/v2/turbo/image-to-video",
        60,
    )


@pytest.mark.parametrize(
    "name",
    [
        "JOBS_TABLE",
        "OUTPUT_BUCKET",
        "WEBHOOK_TOKEN_SECRET",
        "EVENT_BUS_NAME",
        "INPUT_PREFIX",
        "FAL_KEY_SECRET_NAME",
        "WEBHOOK_URL",
        "DEFAULT_RESOLUTION",
        "DEFAULT_DURATION",
        "PRESIGN_EXPIRES_SECONDS",
        "SUBMIT_MAX_ATTEMPTS",
        "SUBMIT_RETRY_BASE_SECONDS",
        "CONTROL_TABLE",
        "FAL_CONCURRENCY",
        "FAL_QUEUE_HEADROOM",
    ],
)
def test_a_missing_submit_variable_is_named_in_the_error(name: str) -> None:
    env = {k: v for k, v in SUBMIT.items() if k != name}

    assert name in validation_error_text(SubmitSettings, env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOBS_TABLE", ""),
        ("WEBHOOK_URL", "abc123.lambda-url.us-east-1.on.aws"),
        ("WEBHOOK_URL", "ftp://example.com/hook"),
        ("DEFAULT_RESOLUTION", "4k"),
        ("DEFAULT_DURATION", "five"),
        ("DEFAULT_DURATION", "0"),
        ("FAL_ENDPOINT", "fal-ai/pika/v2.2/pikaframes"),
        ("FAL_PRICE_OVERRIDE_USD", "cheap"),
        ("FAL_PRICE_OVERRIDE_USD", "-0.10"),
        ("FAL_PRICE_OVERRIDE_USD", "NaN"),
        ("FAL_MEDIA_LIFETIME_SECONDS", "-1"),
        ("PRESIGN_EXPIRES_SECONDS", "30"),
        ("PRESIGN_EXPIRES_SECONDS", "299"),
        ("MAX_IMAGE_BYTES", "0"),
        ("FAL_TIMEOUT_SECONDS", "0"),
        ("SUBMIT_MAX_ATTEMPTS", "0"),
        ("SUBMIT_RETRY_BASE_SECONDS", "-1"),
        ("CONTROL_TABLE", ""),
        ("FAL_CONCURRENCY", "0"),
        ("FAL_CONCURRENCY", "two"),
        ("FAL_QUEUE_HEADROOM", "-1"),
    ],
)
def test_a_malformed_submit_variable_is_named_in_the_error(name: str, value: str) -> None:
    assert name in validation_error_text(SubmitSettings, SUBMIT | {name: value})


@pytest.mark.parametrize(
    ("low", "default", "high"), [("6", "5", "10"), ("1", "5", "4"), ("7", "5", "3")]
)
def test_a_default_duration_outside_the_bounds_stops_the_function_at_cold_start(
    low: str, default: str, high: str
) -> None:
    env = {
        **SUBMIT,
        "MIN_DURATION_SECONDS": low,
        "DEFAULT_DURATION": default,
        "MAX_DURATION_SECONDS": high,
    }

    message = validation_error_text(SubmitSettings, env)

    assert f"DEFAULT_DURATION ({default}) must lie within MIN_DURATION_SECONDS ({low})" in message


def test_the_duration_bounds_come_from_the_template() -> None:
    settings = SubmitSettings.from_environment(
        {
            **SUBMIT,
            "MIN_DURATION_SECONDS": "2",
            "DEFAULT_DURATION": "5",
            "MAX_DURATION_SECONDS": "6",
        }
    )

    assert (settings.min_duration_seconds, settings.max_duration_seconds) == (2, 6)


V2_2 = "fal-ai/pika/v2.2/image-to-video"


def test_the_endpoints_durations_narrow_the_deployments_bounds() -> None:
    settings = SubmitSettings.from_environment({**SUBMIT, "FAL_ENDPOINT": V2_2})

    assert settings.durations_allowed == (5, 10)


def test_a_default_duration_the_endpoint_refuses_stops_the_function_at_cold_start() -> None:
    env = {**SUBMIT, "FAL_ENDPOINT": V2_2, "DEFAULT_DURATION": "6"}

    message = validation_error_text(SubmitSettings, env)

    assert f"DEFAULT_DURATION (6) is not a duration {V2_2} accepts" in message
    assert "(5 or 10)" in message


def test_bounds_that_leave_the_endpoint_no_duration_stop_the_function_at_cold_start() -> None:
    env = {**SUBMIT, "FAL_ENDPOINT": V2_2, "MIN_DURATION_SECONDS": "6", "DEFAULT_DURATION": "7"}
    env |= {"MAX_DURATION_SECONDS": "9"}

    assert "(none)" in validation_error_text(SubmitSettings, env)


def test_the_recorded_price_is_the_tables_unless_the_deployment_negotiated_one() -> None:
    table = SubmitSettings.from_environment({**SUBMIT, "FAL_ENDPOINT": V2_2})
    negotiated = SubmitSettings.from_environment(
        {**SUBMIT, "FAL_ENDPOINT": V2_2, "FAL_PRICE_OVERRIDE_USD": "0.15"}
    )

    assert table.price_usd(resolution="1080p", duration=5) == Decimal("0.45")
    assert negotiated.price_usd(resolution="1080p", duration=10) == Decimal("0.15")


def test_fals_copy_outlives_its_webhook_retries_and_the_reconcilers_recovery_window() -> None:
    settings = SubmitSettings.from_environment(SUBMIT)

    # 2 h of fal's retries + the 3 h deadline + 3 x (a 5 min schedule + 900 s between looks).
    assert settings.minimum_media_lifetime_seconds == 7200 + 10800 + 3 * (300 + 900)
    assert settings.fal_media_lifetime_seconds >= settings.minimum_media_lifetime_seconds


def test_a_media_lifetime_shorter_than_the_recovery_window_stops_the_function_at_cold_start() -> (
    None
):
    env = {**SUBMIT, "FAL_MEDIA_LIFETIME_SECONDS": "86400", "JOB_DEADLINE_SECONDS": "86400"}

    message = validation_error_text(SubmitSettings, env)

    assert "FAL_MEDIA_LIFETIME_SECONDS (86400) must be at least 97200" in message


def test_no_media_lifetime_leaves_fals_account_setting_in_charge() -> None:
    env = {**SUBMIT, "FAL_MEDIA_LIFETIME_SECONDS": "0", "JOB_DEADLINE_SECONDS": "86400"}

    assert SubmitSettings.from_environment(env).fal_media_lifetime_seconds == 0


@pytest.mark.parametrize(
    ("presign", "deadline", "start_timeout"),
    [
        # The defaults: the URL's hour bounds fal's queue wait, not the 3 h job deadline.
        ("3600", "10800", 3600 - PRESIGN_MARGIN_SECONDS),
        # A long-lived URL: the job's deadline is the bound.
        ("43200", "10800", 10800),
        # The shortest URL allowed still leaves fal a queue wait above fal_client's 1 s floor.
        ("300", "10800", 300 - PRESIGN_MARGIN_SECONDS),
        # The shortest deadline allowed.
        ("3600", "2", 2),
    ],
)
def test_fal_never_starts_a_request_after_its_image_url_expired(
    presign: str, deadline: str, start_timeout: int
) -> None:
    env = SUBMIT | {"PRESIGN_EXPIRES_SECONDS": presign, "JOB_DEADLINE_SECONDS": deadline}

    settings = SubmitSettings.from_environment(env)

    assert settings.fal_start_timeout_seconds == start_timeout
    assert settings.fal_start_timeout_seconds > 1
    assert (
        settings.fal_start_timeout_seconds + PRESIGN_MARGIN_SECONDS
        <= settings.presign_expires_seconds
    )


def test_unrelated_environment_variables_are_ignored() -> None:
    env = SUBMIT | {"AWS_REGION": "us-east-1", "PATH": "/usr/bin", "_HANDLER": "app.handler"}

    assert SubmitSettings.from_environment(env).jobs_table == "pika-jobs"


def test_settings_are_read_from_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in WEBHOOK.items():
        monkeypatch.setenv(name, value)

    assert WebhookSettings.from_environment().jobs_table == "pika-jobs"


def test_settings_are_frozen() -> None:
    settings = SubmitSettings.from_environment(SUBMIT)

    with pytest.raises(FrozenInstanceError):
        settings.jobs_table = "other"  # type: ignore[misc]


# --- webhook ----------------------------------------------------------------------------------


def test_webhook_settings_are_read_from_the_environment() -> None:
    settings = WebhookSettings.from_environment(WEBHOOK)

    assert settings.fal_jwks_url == "https://rest.fal.ai/.well-known/jwks.json"
    assert settings.media_hosts == ("v3.fal.media", "v3b.fal.media")
    assert settings.fal_user_id == "github|1234567"
    assert settings.output_prefix == "videos/"
    assert settings.max_body_bytes == 256 * 1024
    assert settings.timestamp_tolerance_seconds == 300


@pytest.mark.parametrize(
    ("raw", "hosts"),
    [
        ("V3.FAL.Media", ("v3.fal.media",)),
        (" v3.fal.media , Fal.Media ", ("v3.fal.media", "fal.media")),
        ("v3.fal.media,,fal.media,", ("v3.fal.media", "fal.media")),
    ],
)
def test_media_hosts_are_split_trimmed_and_lowercased(raw: str, hosts: tuple[str, ...]) -> None:
    settings = WebhookSettings.from_environment(WEBHOOK | {"MEDIA_HOSTS": raw})

    assert settings.media_hosts == hosts


@pytest.mark.parametrize("raw", ["", " ", ",", " , ,"])
def test_media_hosts_must_name_at_least_one_host(raw: str) -> None:
    assert "MEDIA_HOSTS" in validation_error_text(WebhookSettings, WEBHOOK | {"MEDIA_HOSTS": raw})


@pytest.mark.parametrize(
    "name",
    [
        "JOBS_TABLE",
        "OUTPUT_BUCKET",
        "WEBHOOK_TOKEN_SECRET",
        "FAL_JWKS_URL",
        "FAL_USER_ID",
        "MEDIA_HOSTS",
    ],
)
def test_a_missing_webhook_variable_is_named_in_the_error(name: str) -> None:
    env = {k: v for k, v in WEBHOOK.items() if k != name}

    assert name in validation_error_text(WebhookSettings, env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FAL_JWKS_URL", "rest.fal.ai/.well-known/jwks.json"),
        # Plain http only to a loopback host (the local stack's emulator): elsewhere anyone on
        # the path could serve their own keys.
        ("FAL_JWKS_URL", "http://rest.fal.ai/.well-known/jwks.json"),
        ("FAL_JWKS_URL", "http://127.0.0.1.evil.example/jwks.json"),
        ("FAL_JWKS_URL", "http://localhost@evil.example/jwks.json"),
        ("FAL_JWKS_URL", "https:///jwks.json"),
        # Unset, any fal account's signature would be accepted (docs/SECURITY.md).
        ("FAL_USER_ID", ""),
        # A tolerance of 0 refuses every delivery, a negative one all of them, a huge one none.
        ("TIMESTAMP_TOLERANCE_SECONDS", "0"),
        ("TIMESTAMP_TOLERANCE_SECONDS", "-5"),
        ("TIMESTAMP_TOLERANCE_SECONDS", "3601"),
        ("TIMESTAMP_TOLERANCE_SECONDS", "five minutes"),
        ("MAX_BODY_BYTES", "100"),
        ("MAX_VIDEO_BYTES", "0"),
    ],
)
def test_a_malformed_webhook_variable_is_named_in_the_error(name: str, value: str) -> None:
    assert name in validation_error_text(WebhookSettings, WEBHOOK | {name: value})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8443/.well-known/jwks.json",
        "http://localhost:8443/.well-known/jwks.json",
        "http://[::1]:8443/.well-known/jwks.json",
        "https://rest.alpha.fal.ai/.well-known/jwks.json",
    ],
)
def test_the_jwks_url_may_be_plain_http_only_on_loopback(url: str) -> None:
    assert WebhookSettings.from_environment(WEBHOOK | {"FAL_JWKS_URL": url}).fal_jwks_url == url


def test_the_webhook_does_not_need_the_submit_only_variables() -> None:
    assert WebhookSettings.from_environment(WEBHOOK).output_bucket == "pika-output"


# --- each function reads exactly what the template gives it --------------------------------------


def _template_variables(function: str) -> set[str]:
    """The environment variables the template gives a function (Globals and its own)."""
    template = load_template()
    own = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    return {name for name in {*shared, *own} if not name.startswith("POWERTOOLS_")}


def _read(settings: type[CommonSettings]) -> tuple[set[str], set[str]]:
    """The variables a settings class reads: (all of them, the required ones)."""
    specs = fields(settings)
    return (
        {spec.metadata["env"] for spec in specs},
        {spec.metadata["env"] for spec in specs if spec.default is MISSING},
    )


@pytest.mark.parametrize(
    ("function", "settings"),
    [
        ("SubmitFunction", SubmitSettings),
        ("WebhookFunction", WebhookSettings),
        ("ReconcilerFunction", ReconcilerSettings),
        ("NotifierFunction", NotifierSettings),
    ],
)
def test_each_function_gets_every_setting_it_requires_and_none_it_does_not_read(
    function: str, settings: type[CommonSettings]
) -> None:
    given = _template_variables(function)
    readable, required = _read(settings)

    assert required <= given, f"{function} lacks {sorted(required - given)}"
    assert given <= readable, f"{function} is given {sorted(given - readable)} it never reads"


def test_the_reconciler_neither_paces_the_queue_nor_verifies_deliveries() -> None:
    readable, _ = _read(ReconcilerSettings)

    assert not readable & {"SUBMIT_MAX_ATTEMPTS", "SUBMIT_RETRY_BASE_SECONDS"}
    assert not readable & {"FAL_JWKS_URL", "FAL_USER_ID", "MAX_BODY_BYTES"}


def test_the_templates_resolutions_are_the_ones_the_pipeline_accepts() -> None:
    parameter = load_template()["Parameters"]["DefaultResolution"]

    assert tuple(parameter["AllowedValues"]) == RESOLUTIONS
    assert parameter["Default"] in RESOLUTIONS


def _snake(parameter: str) -> str:
    """``ReconcileAfterSeconds`` -> ``reconcile_after_seconds``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", parameter).lower()


def test_each_setting_has_one_name_from_template_parameter_to_code() -> None:
    # ReconcileAfterSeconds -> RECONCILE_AFTER_SECONDS -> settings.reconcile_after_seconds: one
    # name an operator can grep for, whichever of the three they start from.
    template = load_template()
    parameters = set(template["Parameters"])
    variables: dict[str, object] = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            variables.update(resource["Properties"].get("Environment", {}).get("Variables", {}))
    for variable, value in variables.items():
        if variable.startswith("POWERTOOLS_"):
            continue  # Powertools' own names, which it reads itself
        if isinstance(value, dict) and value.get("Ref") in parameters:
            assert variable == _snake(str(value["Ref"])).upper(), (variable, value["Ref"])
    for settings in (SubmitSettings, WebhookSettings, ReconcilerSettings, NotifierSettings):
        for spec in fields(settings):
            assert spec.name == str(spec.metadata["env"]).lower(), (settings.__name__, spec.name)
