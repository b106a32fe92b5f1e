"""What the uploader asked for, read from the object's user metadata and validated once.

Validated through the pydantic model alone, each field's failure mapped to the error code the
job ends with: the model is the one statement of the rules (the Pika schema's fields, lengths and
ranges, the durations the chosen endpoint accepts within the deployment's bounds given as
validation context), and reading the metadata
only decodes and picks values. Keeping pydantic rather than hand checks keeps that one
statement; its cost stays off cold start, as SubmitService imports this module with the first
upload it reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pika_pipeline.errors import UploadRejected
from pika_pipeline.fal import pika
from pika_pipeline.fal.pika import ENDPOINT, Endpoint, Resolution
from pika_pipeline.jobs.error_codes import ErrorCode

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
MAX_PROMPT_LENGTH = 1500
MAX_SEED = 2**32 - 1
# The validation context's keys: the durations and resolutions the endpoint accepts, the former
# within the deployment's bounds (MinDurationSeconds, MaxDurationSeconds).
_DURATIONS = "durations"
_RESOLUTIONS = "resolutions"


class VideoRequest(BaseModel):
    """The Pika arguments this pipeline sends (the same fields on every endpoint), minus the
    image URL.

    Fields in the order their problems are reported: the first one found names the error code.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_LENGTH)
    duration: int = Field(ge=1)
    resolution: Resolution
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_LENGTH)

    @field_validator("prompt", "negative_prompt", mode="before")
    @classmethod
    def _trim(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("duration", "seed", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        # Plain ASCII digits only: int() would also take "1_0" and full-width digits.
        if not _WHOLE_NUMBER.fullmatch(value.strip()):
            raise PydanticCustomError("whole_number", "must be a whole number")
        return int(value.strip())

    @field_validator("duration")
    @classmethod
    def _one_the_endpoint_accepts(cls, value: int, info: ValidationInfo) -> int:
        allowed = (info.context or {}).get(_DURATIONS)
        if allowed is not None and value not in allowed:
            raise PydanticCustomError("out_of_bounds", "not a duration the endpoint accepts")
        return value

    @field_validator("resolution")
    @classmethod
    def _a_resolution_the_endpoint_accepts(cls, value: str, info: ValidationInfo) -> str:
        allowed = (info.context or {}).get(_RESOLUTIONS)
        if allowed is not None and value not in allowed:
            raise PydanticCustomError("literal_error", "not a resolution the endpoint accepts")
        return value

    def fal_arguments(self, image_url: str) -> dict[str, object]:
        arguments: dict[str, object] = {
            "image_url": image_url,
            "prompt": self.prompt,
            "resolution": self.resolution,
            "duration": self.duration,
        }
        if self.negative_prompt:
            arguments["negative_prompt"] = self.negative_prompt
        if self.seed is not None:
            arguments["seed"] = self.seed
        return arguments


def decode_metadata_value(value: str) -> str:
    """S3 returns non-ASCII metadata RFC 2047-encoded (``=?UTF-8?B?...?=`` or ``?Q?``)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeDecodeError):
        return value


def encode_metadata_value(value: str) -> str:
    """The inverse, for uploaders: S3 metadata must be ASCII, so encode anything else."""
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(maxlinelen=10_000)


def video_request_from_metadata(
    metadata: Mapping[str, str],
    *,
    default_resolution: Resolution,
    default_duration: int,
    min_duration_seconds: int,
    max_duration_seconds: int,
    endpoint: Endpoint = ENDPOINT,
) -> VideoRequest:
    """Builds the request, or raises UploadRejected with the code of the first problem found.

    The endpoint's rules (``fal.pika.RULES``) are checked here, before anything is paid: fal
    would answer a 422, which it may charge for.
    """
    values = {key.lower(): decode_metadata_value(value) for key, value in metadata.items()}
    # A blank optional value is as good as none: the default applies.
    fields: dict[str, Any] = {
        "prompt": values.get("prompt", ""),
        "duration": _given(values.get("duration")) or default_duration,
        "resolution": (_given(values.get("resolution")) or default_resolution).lower(),
        "seed": _given(values.get("seed")),
        "negative_prompt": values.get("negative-prompt") or values.get("negative_prompt") or None,
    }
    durations = pika.durations_allowed(
        endpoint,
        min_duration_seconds=min_duration_seconds,
        max_duration_seconds=max_duration_seconds,
    )
    resolutions = pika.RULES[endpoint].resolutions
    try:
        return VideoRequest.model_validate(
            fields, context={_DURATIONS: durations, _RESOLUTIONS: resolutions}
        )
    except ValidationError as exc:
        raise _rejection(
            exc.errors()[0], values, endpoint=endpoint, durations=durations, resolutions=resolutions
        ) from None


MAX_CORRELATION_ID_LENGTH = 256


def correlation_id_from_metadata(metadata: Mapping[str, str]) -> str | None:
    """The upload's ``correlation-id``: the uploader's own reference, echoed in the job, its
    events, webhooks and video. Printable text of at most MAX_CORRELATION_ID_LENGTH characters,
    since it ends up in logs, terminals and S3 metadata; None when absent or blank."""
    values = {key.lower(): value for key, value in metadata.items()}
    raw = values.get("correlation-id", values.get("correlation_id"))
    given = _given(decode_metadata_value(raw)) if raw is not None else None
    if given is None:
        return None
    if len(given) > MAX_CORRELATION_ID_LENGTH:
        raise UploadRejected(
            ErrorCode.INVALID_CORRELATION_ID,
            f"correlation-id is {len(given)} characters; at most {MAX_CORRELATION_ID_LENGTH} "
            "are allowed.",
        )
    if not given.isprintable():
        raise UploadRejected(
            ErrorCode.INVALID_CORRELATION_ID,
            "correlation-id must be printable text (no control characters).",
        )
    return given


PRIORITIES = ("high", "normal", "low")


def priority_from_metadata(metadata: Mapping[str, str]) -> str:
    """The upload's ``priority`` (its dispatch lane): high, normal (the default) or low."""
    values = {key.lower(): value for key, value in metadata.items()}
    given = _given(decode_metadata_value(values.get("priority", "")))
    if given is None:
        return "normal"
    if given.lower() not in PRIORITIES:
        raise UploadRejected(
            ErrorCode.INVALID_PRIORITY,
            f"priority must be {', '.join(PRIORITIES)}, got {given!r}.",
        )
    return given.lower()


def _given(raw: str | None) -> str | None:
    return raw.strip() or None if raw is not None else None


def _rejection(
    error: ErrorDetails,
    values: Mapping[str, str],
    *,
    endpoint: Endpoint,
    durations: tuple[int, ...],
    resolutions: tuple[Resolution, ...],
) -> UploadRejected:
    """The error code and message of the field that failed validation."""
    field, kind, value = error["loc"][0], error["type"], error["input"]
    given = values.get(str(field), value)  # as the uploader wrote it
    match field:
        case "prompt" if kind == "string_too_long":
            return UploadRejected(
                ErrorCode.PROMPT_TOO_LONG,
                f"The prompt is {len(value)} characters; at most {MAX_PROMPT_LENGTH} are allowed.",
            )
        case "prompt":
            return UploadRejected(
                ErrorCode.MISSING_PROMPT,
                "The object has no prompt: upload it with metadata 'prompt' (x-amz-meta-prompt).",
            )
        case "negative_prompt":
            return UploadRejected(
                ErrorCode.PROMPT_TOO_LONG,
                f"The negative prompt is {len(value)} characters; at most {MAX_PROMPT_LENGTH} "
                "are allowed.",
            )
        case "duration" if kind == "whole_number":
            return UploadRejected(
                ErrorCode.INVALID_DURATION,
                f"duration must be a whole number, got {given!r}.",
            )
        case "duration":
            # Name the endpoint when its own rule narrows the deployment's bounds.
            on = f" on {endpoint}" if pika.RULES[endpoint].durations is not None else ""
            allowed = pika.describe_durations(durations) if durations else "none"
            return UploadRejected(
                ErrorCode.INVALID_DURATION,
                f"duration must be {allowed} seconds{on}, got {value}.",
            )
        case "resolution":
            return UploadRejected(
                ErrorCode.INVALID_RESOLUTION,
                f"resolution must be {' or '.join(resolutions)}, got {given!r}.",
            )
        case "seed" if kind == "whole_number":
            return UploadRejected(
                ErrorCode.INVALID_SEED,
                f"seed must be a whole number, got {given!r}.",
            )
        case "seed":
            return UploadRejected(
                ErrorCode.INVALID_SEED, f"seed must be between 0 and {MAX_SEED}, got {value}."
            )
    raise AssertionError(f"VideoRequest.{field} has no error code")
