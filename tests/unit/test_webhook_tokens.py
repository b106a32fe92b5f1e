"""Per-job webhook URLs: the job id plus an HMAC token only this stack can make."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from pika_pipeline.webhook_tokens import token_for, token_matches, webhook_url_for

KEY = "token-signing-secret"
JOB = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_a_token_matches_the_job_it_was_made_for() -> None:
    assert token_matches(JOB, token_for(JOB, KEY), KEY)


def test_tokens_are_deterministic() -> None:
    assert token_for(JOB, KEY) == token_for(JOB, KEY)


def test_a_token_for_another_job_does_not_match() -> None:
    other_job_token = token_for("another-job", KEY)

    assert not token_matches(JOB, other_job_token, KEY)


def test_a_token_made_with_another_key_does_not_match() -> None:
    assert not token_matches(JOB, token_for(JOB, "some-other-secret"), KEY)


GOOD = token_for(JOB, KEY)


@pytest.mark.parametrize(
    "tampered",
    [
        "",
        GOOD[:-1],
        GOOD + "0",
        GOOD.upper(),
        ("1" if GOOD[0] == "0" else "0") + GOOD[1:],
        GOOD[::-1],
        " " + GOOD,
    ],
    ids=["empty", "truncated", "extended", "uppercased", "one-char-changed", "reversed", "padded"],
)
def test_a_tampered_token_does_not_match(tampered: str) -> None:
    assert not token_matches(JOB, tampered, KEY)


def test_a_non_ascii_token_simply_does_not_match() -> None:
    assert not token_matches(JOB, "é" * 64, KEY)


def test_webhook_url_carries_the_job_id_and_its_token() -> None:
    url = webhook_url_for("https://hooks.example.com/fal", JOB, KEY)

    parts = urlsplit(url)
    query = parse_qs(parts.query, strict_parsing=True)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "hooks.example.com", "/fal")
    assert query == {"job_id": [JOB], "token": [token_for(JOB, KEY)]}
    assert url.startswith("https://hooks.example.com/fal?")


def test_webhook_url_appends_to_an_existing_query_with_an_ampersand() -> None:
    url = webhook_url_for("https://hooks.example.com/fal?stage=prod", JOB, KEY)

    assert url.startswith("https://hooks.example.com/fal?stage=prod&job_id=")
    assert url.count("?") == 1
    query = parse_qs(urlsplit(url).query, strict_parsing=True)
    assert query == {"stage": ["prod"], "job_id": [JOB], "token": [token_for(JOB, KEY)]}


def test_a_token_read_back_from_the_url_matches() -> None:
    url = webhook_url_for("https://abc.lambda-url.us-east-1.on.aws/", JOB, KEY)

    query = parse_qs(urlsplit(url).query)
    assert token_matches(query["job_id"][0], query["token"][0], KEY)


def test_job_ids_with_url_special_characters_survive_the_round_trip() -> None:
    job_id = "a job&id=x?y#z/é"

    query = parse_qs(urlsplit(webhook_url_for("https://h/", job_id, KEY)).query)

    assert query["job_id"] == [job_id]
    assert token_matches(job_id, query["token"][0], KEY)
