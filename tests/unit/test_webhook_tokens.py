"""Per-attempt webhook URLs: the job id, the submit attempt and an expiry, with an HMAC token over
all three."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from pika_pipeline.webhook.tokens import new_attempt, token_for, token_matches, webhook_url_for

KEY = "token-signing-secret"
JOB = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ATTEMPT = "5c0ffee15ba5eba1"
EXPIRES = 1_800_000_000


def test_a_token_matches_the_job_and_attempt_it_was_made_for() -> None:
    assert token_matches(JOB, ATTEMPT, EXPIRES, token_for(JOB, ATTEMPT, EXPIRES, KEY), KEY)


def test_tokens_are_deterministic() -> None:
    assert token_for(JOB, ATTEMPT, EXPIRES, KEY) == token_for(JOB, ATTEMPT, EXPIRES, KEY)


def test_a_token_for_another_job_does_not_match() -> None:
    other_job_token = token_for("another-job", ATTEMPT, EXPIRES, KEY)

    assert not token_matches(JOB, ATTEMPT, EXPIRES, other_job_token, KEY)


def test_a_token_for_another_attempt_of_the_same_job_does_not_match() -> None:
    assert not token_matches(
        JOB, ATTEMPT, EXPIRES, token_for(JOB, "0000000000000000", EXPIRES, KEY), KEY
    )


def test_moving_characters_between_job_id_and_attempt_changes_the_token() -> None:
    assert token_for(JOB + "5", ATTEMPT[1:], EXPIRES, KEY) != token_for(JOB, ATTEMPT, EXPIRES, KEY)


def test_a_token_made_with_another_key_does_not_match() -> None:
    assert not token_matches(
        JOB, ATTEMPT, EXPIRES, token_for(JOB, ATTEMPT, EXPIRES, "some-other-secret"), KEY
    )


def test_every_attempt_is_new() -> None:
    attempts = {new_attempt() for _ in range(1000)}

    assert len(attempts) == 1000
    assert all(len(a) == 16 and int(a, 16) >= 0 for a in attempts)


GOOD = token_for(JOB, ATTEMPT, EXPIRES, KEY)


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
    assert not token_matches(JOB, ATTEMPT, EXPIRES, tampered, KEY)


def test_a_non_ascii_token_simply_does_not_match() -> None:
    assert not token_matches(JOB, ATTEMPT, EXPIRES, "é" * 64, KEY)


def test_webhook_url_carries_the_job_id_the_attempt_and_their_token() -> None:
    url = webhook_url_for("https://hooks.example.com/fal", JOB, ATTEMPT, KEY, expires_at=EXPIRES)

    parts = urlsplit(url)
    query = parse_qs(parts.query, strict_parsing=True)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "hooks.example.com", "/fal")
    assert query == {
        "job_id": [JOB],
        "attempt": [ATTEMPT],
        "expires": [str(EXPIRES)],
        "token": [GOOD],
    }
    assert url.startswith("https://hooks.example.com/fal?")


def test_webhook_url_appends_to_an_existing_query_with_an_ampersand() -> None:
    url = webhook_url_for(
        "https://hooks.example.com/fal?stage=prod", JOB, ATTEMPT, KEY, expires_at=EXPIRES
    )

    assert url.startswith("https://hooks.example.com/fal?stage=prod&job_id=")
    assert url.count("?") == 1
    query = parse_qs(urlsplit(url).query, strict_parsing=True)
    assert query == {
        "stage": ["prod"],
        "job_id": [JOB],
        "attempt": [ATTEMPT],
        "expires": [str(EXPIRES)],
        "token": [GOOD],
    }


def test_a_token_read_back_from_the_url_matches() -> None:
    url = webhook_url_for(
        "https://abc.lambda-url.us-east-1.on.aws/", JOB, ATTEMPT, KEY, expires_at=EXPIRES
    )

    query = parse_qs(urlsplit(url).query)
    assert token_matches(
        query["job_id"][0], query["attempt"][0], int(query["expires"][0]), query["token"][0], KEY
    )


def test_job_ids_with_url_special_characters_survive_the_round_trip() -> None:
    job_id = "a job&id=x?y#z/é"

    query = parse_qs(
        urlsplit(webhook_url_for("https://h/", job_id, ATTEMPT, KEY, expires_at=EXPIRES)).query
    )

    assert query["job_id"] == [job_id]
    assert token_matches(job_id, ATTEMPT, EXPIRES, query["token"][0], KEY)


def test_the_expiry_is_inside_the_token() -> None:
    # Moving the expiry later (to keep a leaked URL alive) breaks the token.
    assert not token_matches(JOB, ATTEMPT, EXPIRES + 3600, GOOD, KEY)
    assert token_for(JOB, ATTEMPT, EXPIRES + 1, KEY) != GOOD


def test_an_attempt_whose_digits_run_into_the_expiry_changes_the_token() -> None:
    assert token_for(JOB, ATTEMPT + "1", int(str(EXPIRES)[1:]), KEY) != GOOD
