"""The Pika endpoints a deployment may choose (FalEndpoint): what each accepts and what it costs,
one table each, and the template, the emulator and the docs agreeing with them."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from local.fal_emulator.server import SCHEMAS
from local.template import REPO_ROOT, load_template
from pika_pipeline.errors import UploadRejected
from pika_pipeline.fal import pika
from pika_pipeline.fal.pika import ENDPOINTS, RULES, Endpoint, describe_durations
from pika_pipeline.fal.prices import PRICES, price_usd, usd_per_video
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.submit.video_request import video_request_from_metadata

V2_1, V2_2, TURBO = pika.ENDPOINT, pika.V2_2, pika.TURBO


def request_on(endpoint: Endpoint, **metadata: str) -> object:
    return video_request_from_metadata(
        {"prompt": "a cat", **metadata},
        default_resolution="720p",
        default_duration=5,
        min_duration_seconds=1,
        max_duration_seconds=10,
        endpoint=endpoint,
    )


# --- the rules ----------------------------------------------------------------------------------


def test_v2_2_rejects_a_duration_it_does_not_offer_and_names_the_ones_it_does() -> None:
    with pytest.raises(UploadRejected) as info:
        request_on(V2_2, duration="7")

    assert info.value.code == ErrorCode.INVALID_DURATION
    assert info.value.message == f"duration must be 5 or 10 seconds on {V2_2}, got 7."


@pytest.mark.parametrize("duration", ["5", "10"])
def test_v2_2_accepts_its_two_durations(duration: str) -> None:
    assert request_on(V2_2, duration=duration) is not None


@pytest.mark.parametrize("endpoint", [V2_1, TURBO])
def test_v2_1_and_turbo_take_any_duration_within_the_deployments_bounds(endpoint: Endpoint) -> None:
    assert request_on(endpoint, duration="7") is not None
    with pytest.raises(UploadRejected) as info:
        request_on(endpoint, duration="11")
    assert info.value.message == "duration must be between 1 and 10 seconds, got 11."


def test_the_deployments_bounds_narrow_v2_2_too() -> None:
    assert pika.durations_allowed(V2_2, min_duration_seconds=1, max_duration_seconds=6) == (5,)
    assert pika.durations_allowed(V2_2, min_duration_seconds=6, max_duration_seconds=9) == ()
    assert pika.durations_allowed(V2_1, min_duration_seconds=2, max_duration_seconds=4) == (2, 3, 4)


@pytest.mark.parametrize(
    ("allowed", "words"),
    [((5, 10), "5 or 10"), ((5,), "5"), ((1, 2), "1 or 2"), ((1, 2, 3), "between 1 and 3")],
)
def test_allowed_durations_read_as_a_sentence(allowed: tuple[int, ...], words: str) -> None:
    assert describe_durations(allowed) == words


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_rejects_an_unknown_resolution(endpoint: Endpoint) -> None:
    with pytest.raises(UploadRejected) as info:
        request_on(endpoint, resolution="4k")

    assert info.value.code == ErrorCode.INVALID_RESOLUTION


# --- the prices -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "resolution", "duration", "usd"),
    [
        (V2_1, "720p", 5, "0.40"),
        (V2_1, "1080p", 10, "0.40"),  # one price per video, whatever it is
        (V2_2, "720p", 5, "0.20"),
        (V2_2, "1080p", 5, "0.45"),
        (V2_2, "720p", 10, "0.40"),  # 10 s: two 5 s blocks (not on fal's page; see prices.py)
        (V2_2, "1080p", 10, "0.90"),
        (TURBO, "720p", 5, "0.20"),
        (TURBO, "1080p", 7, "0.20"),
    ],
)
def test_each_video_is_priced_from_the_table(
    endpoint: Endpoint, resolution: pika.Resolution, duration: int, usd: str
) -> None:
    assert price_usd(endpoint, resolution=resolution, duration=duration) == Decimal(usd)


def test_a_negotiated_price_replaces_the_tables() -> None:
    price = price_usd(V2_2, resolution="1080p", duration=10, override_usd=Decimal("0.30"))

    assert price == Decimal("0.30")


def test_the_default_video_price_is_the_one_the_cli_and_bench_quote() -> None:
    assert [usd_per_video(e) for e in ENDPOINTS] == [Decimal(p) for p in ("0.40", "0.20", "0.20")]
    with pytest.raises(KeyError):
        usd_per_video("fal-ai/pika/v2.2/pikaframes")


def test_rules_and_prices_cover_the_same_endpoints_and_resolutions() -> None:
    assert set(RULES) == set(PRICES) == set(ENDPOINTS)
    for endpoint, rules in RULES.items():
        assert set(PRICES[endpoint].by_resolution) == set(rules.resolutions)
        assert PRICES[endpoint].source.endswith(f"{endpoint}/llms.txt")


# --- the template, the emulator, the docs ---------------------------------------------------------


def test_the_template_offers_exactly_the_tables_endpoints_with_v2_1_by_default() -> None:
    parameter = load_template()["Parameters"]["FalEndpoint"]

    assert tuple(parameter["AllowedValues"]) == ENDPOINTS
    assert parameter["Default"] == V2_1


def test_the_emulator_serves_every_endpoint() -> None:
    assert set(SCHEMAS) == set(ENDPOINTS)


def test_the_operations_guides_prices_are_the_tables() -> None:
    """Each row of the cost table in docs/OPERATIONS.md: `endpoint` | resolution | $price."""
    text = (REPO_ROOT / "docs" / "OPERATIONS.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| (720p|1080p) \| (\d+) s \| \$(\d+\.\d\d) \|", text, re.M)

    assert len(rows) >= len(ENDPOINTS) * 2
    for endpoint, resolution, duration, usd in rows:
        assert pika.is_endpoint(endpoint), endpoint
        assert price_usd(endpoint, resolution=resolution, duration=int(duration)) == Decimal(usd)
