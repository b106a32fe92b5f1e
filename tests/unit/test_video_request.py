"""What the uploader asked for, read from the object's user metadata."""

from __future__ import annotations

from collections.abc import Mapping
from email.charset import BASE64, Charset
from email.header import Header

import pytest
from pydantic import ValidationError

from pika_pipeline.errors import UploadRejected
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.submit.video_request import (
    MAX_PROMPT_LENGTH,
    MAX_SEED,
    VideoRequest,
    correlation_id_from_metadata,
    video_request_from_metadata,
)


def request_from(metadata: Mapping[str, str]) -> VideoRequest:
    return video_request_from_metadata(
        metadata,
        default_resolution="720p",
        default_duration=5,
        min_duration_seconds=1,
        max_duration_seconds=10,
    )


def rejection_code(metadata: Mapping[str, str]) -> ErrorCode:
    with pytest.raises(UploadRejected) as info:
        request_from(metadata)
    return info.value.code


def b_encoded(text: str) -> str:
    """How S3 hands back non-ASCII metadata: RFC 2047, base64 ("B") encoding."""
    charset = Charset("utf-8")
    charset.header_encoding = BASE64  # Header would otherwise pick Q for mostly-ASCII text
    return Header(text, charset).encode()


# --- the happy path and defaults --------------------------------------------------------------


def test_a_prompt_alone_gets_the_default_resolution_and_duration() -> None:
    request = request_from({"prompt": "a cat surfing a wave"})

    assert request == VideoRequest(
        prompt="a cat surfing a wave",
        resolution="720p",
        duration=5,
        negative_prompt=None,
        seed=None,
    )


def test_defaults_come_from_the_caller() -> None:
    request = video_request_from_metadata(
        {"prompt": "x"},
        default_resolution="1080p",
        default_duration=8,
        min_duration_seconds=2,
        max_duration_seconds=9,
    )

    assert (request.resolution, request.duration) == ("1080p", 8)


def test_every_field_is_read() -> None:
    request = request_from(
        {
            "prompt": "a cat",
            "negative-prompt": "blurry",
            "resolution": "1080p",
            "duration": "10",
            "seed": "42",
        }
    )

    assert request == VideoRequest(
        prompt="a cat", negative_prompt="blurry", resolution="1080p", duration=10, seed=42
    )


def test_metadata_names_are_case_insensitive() -> None:
    request = request_from({"Prompt": "a cat", "RESOLUTION": "1080p", "Duration": "7"})

    assert (request.prompt, request.resolution, request.duration) == ("a cat", "1080p", 7)


@pytest.mark.parametrize("name", ["negative-prompt", "negative_prompt"])
def test_negative_prompt_is_accepted_under_both_spellings(name: str) -> None:
    assert request_from({"prompt": "a cat", name: "low quality"}).negative_prompt == "low quality"


def test_prompts_are_trimmed() -> None:
    request = request_from({"prompt": "  \t a cat \n", "negative-prompt": "  blurry  "})

    assert (request.prompt, request.negative_prompt) == ("a cat", "blurry")


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_optional_values_fall_back_to_defaults(blank: str) -> None:
    request = request_from(
        {"prompt": "a cat", "resolution": blank, "duration": blank, "seed": blank}
    )

    assert (request.resolution, request.duration, request.seed) == ("720p", 5, None)


# --- RFC 2047 encoded values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "café au lait",
        "一只猫在冲浪",
        "Ünïcödé 🎬 with emoji",
        "élan " * 100,  # long enough for the encoder to fold it into several encoded words
    ],
)
def test_b_encoded_prompt_is_decoded(text: str) -> None:
    encoded = b_encoded(text)
    assert encoded.startswith("=?utf-8?b?")

    assert request_from({"prompt": encoded}).prompt == text.strip()


@pytest.mark.parametrize("text", ["café au lait", "一只猫在冲浪", "x" * 80 + "é"])
def test_prompt_encoded_by_the_standard_library_is_decoded(text: str) -> None:
    assert request_from({"prompt": Header(text, "utf-8").encode()}).prompt == text


def test_q_encoded_prompt_is_decoded() -> None:
    assert request_from({"prompt": "=?UTF-8?Q?caf=C3=A9_au_lait?="}).prompt == "café au lait"


def test_lowercase_q_encoded_prompt_is_decoded() -> None:
    assert request_from({"prompt": "=?utf-8?q?na=C3=AFve?="}).prompt == "naïve"


@pytest.mark.parametrize("name", ["negative-prompt", "negative_prompt"])
def test_encoded_negative_prompt_is_decoded(name: str) -> None:
    request = request_from({"prompt": "a cat", name: b_encoded("flou, déformé")})

    assert request.negative_prompt == "flou, déformé"


def test_encoded_prompt_is_trimmed_after_decoding() -> None:
    assert request_from({"prompt": b_encoded("  café  ")}).prompt == "café"


def test_encoded_resolution_and_duration_are_decoded() -> None:
    request = request_from(
        {"prompt": "x", "resolution": "=?UTF-8?Q?1080p?=", "duration": b_encoded("9")}
    )

    assert (request.resolution, request.duration) == ("1080p", 9)


def test_plain_prompt_that_merely_contains_equals_question_mark_is_kept() -> None:
    assert request_from({"prompt": "is 2+2=?4"}).prompt == "is 2+2=?4"


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"prompt": ""},
        {"prompt": "   "},
        {"prompt": "\t\n"},
        {"prompt": b_encoded("   ")},
        {"negative-prompt": "no prompt given"},
        {"other": "value"},
    ],
)
def test_missing_prompt_is_rejected(metadata: dict[str, str]) -> None:
    assert rejection_code(metadata) == ErrorCode.MISSING_PROMPT


def test_rejection_carries_a_readable_message() -> None:
    with pytest.raises(UploadRejected) as info:
        request_from({})

    assert "prompt" in info.value.message
    assert str(info.value) == info.value.message


def test_prompt_at_the_length_limit_is_accepted() -> None:
    prompt = "é" * MAX_PROMPT_LENGTH

    assert request_from({"prompt": f"  {prompt}  "}).prompt == prompt


def test_prompt_over_the_length_limit_is_rejected() -> None:
    assert rejection_code({"prompt": "a" * (MAX_PROMPT_LENGTH + 1)}) == ErrorCode.PROMPT_TOO_LONG


def test_encoded_prompt_over_the_length_limit_is_rejected() -> None:
    prompt = b_encoded("é" * (MAX_PROMPT_LENGTH + 1))

    assert rejection_code({"prompt": prompt}) == ErrorCode.PROMPT_TOO_LONG


def test_negative_prompt_over_the_length_limit_is_rejected() -> None:
    code = rejection_code({"prompt": "x", "negative-prompt": "n" * (MAX_PROMPT_LENGTH + 1)})

    assert code == ErrorCode.PROMPT_TOO_LONG


@pytest.mark.parametrize("resolution", ["720p", "1080p", "1080P", " 720p ", "720P"])
def test_supported_resolutions_are_accepted_in_any_case(resolution: str) -> None:
    assert request_from({"prompt": "x", "resolution": resolution}).resolution == (
        resolution.strip().lower()
    )


@pytest.mark.parametrize("resolution", ["4k", "480p", "720", "1080", "1920x1080", "p720"])
def test_unsupported_resolution_is_rejected(resolution: str) -> None:
    assert rejection_code({"prompt": "x", "resolution": resolution}) == (
        ErrorCode.INVALID_RESOLUTION
    )


@pytest.mark.parametrize("duration", ["five", "5.5", "5s", "1e1", "0x5", "--5"])
def test_non_integer_duration_is_rejected(duration: str) -> None:
    assert rejection_code({"prompt": "x", "duration": duration}) == ErrorCode.INVALID_DURATION


@pytest.mark.parametrize("duration", ["0", "-1", "11", "600"])
def test_duration_out_of_bounds_is_rejected(duration: str) -> None:
    assert rejection_code({"prompt": "x", "duration": duration}) == ErrorCode.INVALID_DURATION


@pytest.mark.parametrize("duration", ["1", "10", " 4 "])
def test_duration_within_bounds_is_accepted(duration: str) -> None:
    assert request_from({"prompt": "x", "duration": duration}).duration == int(duration)


def test_default_duration_is_still_checked_against_the_bounds() -> None:
    with pytest.raises(UploadRejected) as info:
        video_request_from_metadata(
            {"prompt": "x"},
            default_resolution="720p",
            default_duration=12,
            min_duration_seconds=1,
            max_duration_seconds=10,
        )

    assert info.value.code == ErrorCode.INVALID_DURATION


@pytest.mark.parametrize("seed", ["abc", "1.5", "seed", "0x10"])
def test_non_integer_seed_is_rejected(seed: str) -> None:
    assert rejection_code({"prompt": "x", "seed": seed}) == ErrorCode.INVALID_SEED


@pytest.mark.parametrize("seed", ["-1", str(MAX_SEED + 1), str(2**64)])
def test_seed_out_of_range_is_rejected(seed: str) -> None:
    assert rejection_code({"prompt": "x", "seed": seed}) == ErrorCode.INVALID_SEED


@pytest.mark.parametrize("seed", [0, 1, 2**31, MAX_SEED])
def test_seed_within_range_is_accepted(seed: int) -> None:
    assert request_from({"prompt": "x", "seed": str(seed)}).seed == seed


def test_max_seed_is_the_largest_unsigned_32_bit_integer() -> None:
    assert MAX_SEED == 2**32 - 1


# --- the arguments sent to fal ----------------------------------------------------------------


def test_fal_arguments_of_a_minimal_request_hold_only_the_required_fields() -> None:
    arguments = request_from({"prompt": "a cat"}).fal_arguments("https://bucket/presigned")

    assert arguments == {
        "image_url": "https://bucket/presigned",
        "prompt": "a cat",
        "resolution": "720p",
        "duration": 5,
    }


def test_fal_arguments_include_the_optional_fields_that_were_set() -> None:
    request = request_from(
        {"prompt": "a cat", "negative_prompt": "blurry", "seed": "7", "resolution": "1080p"}
    )

    assert request.fal_arguments("https://img") == {
        "image_url": "https://img",
        "prompt": "a cat",
        "negative_prompt": "blurry",
        "seed": 7,
        "resolution": "1080p",
        "duration": 5,
    }


def test_seed_zero_is_sent_to_fal() -> None:
    arguments = request_from({"prompt": "a cat", "seed": "0"}).fal_arguments("https://img")

    assert arguments["seed"] == 0


def test_blank_negative_prompt_is_not_sent_to_fal() -> None:
    arguments = request_from({"prompt": "a cat", "negative-prompt": "   "}).fal_arguments("u")

    assert "negative_prompt" not in arguments


# --- one validation, one message per problem --------------------------------------------------


def rejection(metadata: Mapping[str, str]) -> UploadRejected:
    with pytest.raises(UploadRejected) as info:
        request_from(metadata)
    return info.value


@pytest.mark.parametrize(
    ("metadata", "code", "message"),
    [
        ({}, ErrorCode.MISSING_PROMPT, "The object has no prompt"),
        (
            {"prompt": "a" * (MAX_PROMPT_LENGTH + 1)},
            ErrorCode.PROMPT_TOO_LONG,
            f"The prompt is {MAX_PROMPT_LENGTH + 1} characters; at most {MAX_PROMPT_LENGTH}",
        ),
        (
            {"prompt": "x", "negative-prompt": "n" * (MAX_PROMPT_LENGTH + 2)},
            ErrorCode.PROMPT_TOO_LONG,
            f"The negative prompt is {MAX_PROMPT_LENGTH + 2} characters",
        ),
        (
            {"prompt": "x", "duration": "5s"},
            ErrorCode.INVALID_DURATION,
            "duration must be a whole number, got '5s'",
        ),
        (
            {"prompt": "x", "duration": "11"},
            ErrorCode.INVALID_DURATION,
            "duration must be between 1 and 10 seconds, got 11",
        ),
        (
            {"prompt": "x", "duration": "0"},
            ErrorCode.INVALID_DURATION,
            "duration must be between 1 and 10 seconds, got 0",
        ),
        (
            {"prompt": "x", "resolution": "4K"},
            ErrorCode.INVALID_RESOLUTION,
            "resolution must be 720p or 1080p, got '4K'",
        ),
        ({"prompt": "x", "seed": "1.5"}, ErrorCode.INVALID_SEED, "seed must be a whole number"),
        (
            {"prompt": "x", "seed": "-1"},
            ErrorCode.INVALID_SEED,
            f"seed must be between 0 and {MAX_SEED}, got -1",
        ),
    ],
)
def test_each_problem_has_its_code_and_a_message_naming_the_value(
    metadata: dict[str, str], code: ErrorCode, message: str
) -> None:
    rejected = rejection(metadata)

    assert rejected.code == code
    assert rejected.message.startswith(message), rejected.message


def test_the_first_problem_in_field_order_is_the_one_reported() -> None:
    # A bad duration and a bad seed: the duration comes first, as it always has.
    rejected = rejection({"prompt": "x", "duration": "abc", "seed": "abc"})

    assert rejected.code == ErrorCode.INVALID_DURATION


def test_a_request_built_in_code_is_held_to_the_same_schema() -> None:
    # The model is the one statement of the rules, whoever builds the request.
    with pytest.raises(ValidationError):
        VideoRequest(prompt="x", resolution="4k", duration=5)  # type: ignore[arg-type]


# --- correlation id -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"correlation-id": "SKU 123 / batch 7"}, "SKU 123 / batch 7"),
        ({"Correlation-Id": "  order-9  "}, "order-9"),
        ({"correlation-id": b_encoded("réf 42 ✓")}, "réf 42 ✓"),
        ({"correlation-id": "x" * 256}, "x" * 256),
        ({"correlation-id": "   "}, None),
        ({}, None),
    ],
)
def test_the_correlation_id_is_the_uploaders_text(
    metadata: dict[str, str], expected: str | None
) -> None:
    assert correlation_id_from_metadata(metadata) == expected


@pytest.mark.parametrize("given", ["x" * 257, "a\tb", "line\nbreak", b_encoded("bell\x07")])
def test_a_correlation_id_too_long_or_not_printable_is_rejected(given: str) -> None:
    with pytest.raises(UploadRejected) as info:
        correlation_id_from_metadata({"correlation-id": given})

    assert info.value.code is ErrorCode.INVALID_CORRELATION_ID
