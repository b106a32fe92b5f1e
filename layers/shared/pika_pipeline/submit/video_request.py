"""What the uploader asked for, read from the object's user metadata and validated."""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pika_pipeline.errors import UploadRejected
from pika_pipeline.jobs.error_codes import ErrorCode

Resolution = Literal["720p", "1080p"]
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
MAX_PROMPT_LENGTH = 1500
MAX_SEED = 2**32 - 1


class VideoRequest(BaseModel):
    """The Pika v2.1 arguments this pipeline sends, minus the image URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_LENGTH)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_LENGTH)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    resolution: Resolution
    duration: int

    @field_validator("prompt", "negative_prompt", mode="before")
    @classmethod
    def _trim(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

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
    min_duration: int,
    max_duration: int,
) -> VideoRequest:
    """Builds the request, or raises UploadRejected with the code of the first problem found."""
    values = {key.lower(): decode_metadata_value(value) for key, value in metadata.items()}
    prompt = values.get("prompt", "").strip()
    if not prompt:
        raise UploadRejected(
            ErrorCode.MISSING_PROMPT,
            "The object has no prompt: upload it with metadata 'prompt' (x-amz-meta-prompt).",
        )
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise UploadRejected(
            ErrorCode.PROMPT_TOO_LONG,
            f"The prompt is {len(prompt)} characters; at most {MAX_PROMPT_LENGTH} are allowed.",
        )
    duration = _integer(values.get("duration"), ErrorCode.INVALID_DURATION, "duration")
    if duration is None:
        duration = default_duration
    if not min_duration <= duration <= max_duration:
        raise UploadRejected(
            ErrorCode.INVALID_DURATION,
            f"duration must be between {min_duration} and {max_duration} seconds, got {duration}.",
        )
    resolution = values.get("resolution", "").strip().lower() or default_resolution
    if resolution not in ("720p", "1080p"):
        raise UploadRejected(
            ErrorCode.INVALID_RESOLUTION,
            f"resolution must be 720p or 1080p, got {values['resolution']!r}.",
        )
    seed = _integer(values.get("seed"), ErrorCode.INVALID_SEED, "seed")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UploadRejected(
            ErrorCode.INVALID_SEED, f"seed must be between 0 and {MAX_SEED}, got {seed}."
        )
    negative = (values.get("negative-prompt") or values.get("negative_prompt") or "").strip()
    if len(negative) > MAX_PROMPT_LENGTH:
        raise UploadRejected(
            ErrorCode.PROMPT_TOO_LONG,
            f"The negative prompt is {len(negative)} characters; at most {MAX_PROMPT_LENGTH} "
            "are allowed.",
        )
    try:
        return VideoRequest(
            prompt=prompt,
            negative_prompt=negative or None,
            seed=seed,
            resolution=resolution,  # type: ignore[arg-type]  # checked just above
            duration=duration,
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise UploadRejected(ErrorCode.INVALID_METADATA, f"{field}: {problem['msg']}") from exc


def _integer(raw: str | None, code: ErrorCode, name: str) -> int | None:
    if raw is None or not raw.strip():
        return None
    # Plain ASCII digits only: int() would also take "1_0" and full-width digits.
    if not _WHOLE_NUMBER.fullmatch(raw.strip()):
        raise UploadRejected(code, f"{name} must be a whole number, got {raw!r}.")
    return int(raw.strip())
