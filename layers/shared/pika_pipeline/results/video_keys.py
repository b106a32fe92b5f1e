"""Where a job's video is found: the readable key its upload's key gives (``VideoKeyTemplate``),
and which of two uploads that want the same readable key is the newer one.

A video is written straight to its readable key when nothing is there (the usual case). When
an earlier upload's video is, it goes to its staging key, one per fal request
(``{prefix}{job_id}/{request}.mp4``), and the recorder moves it to the readable key only if its
upload is the newer one; otherwise the staging key is where it stays.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import PurePosixPath

DEFAULT_TEMPLATE = "{prefix}{path}{stem}.mp4"
# What a template may use; each is documented in docs/OPERATIONS.md (VideoKeyTemplate).
FIELDS = frozenset({"prefix", "path", "stem", "name", "ext", "job_id"})
# Without one of these, every upload would want the same key.
_NAMING_FIELDS = frozenset({"stem", "name", "job_id"})
MAX_KEY_BYTES = 1024  # S3's limit on a key
_HEX = re.compile(r"[0-9a-fA-F]+")


class InvalidVideoKeyTemplate(ValueError):
    """VideoKeyTemplate cannot name videos; the message says why."""


def staging_key(output_prefix: str, job_id: str, request_id: str) -> str:
    """Where one fal request's video is stored when its readable key is taken (and stays, when
    a newer upload holds that key); an older upload's video is also moved aside to it."""
    return f"{output_prefix}{job_id}/{request_id}.mp4"


@dataclass(frozen=True)
class VideoKeyTemplate:
    """A checked template; ``key_for`` renders it for one upload."""

    template: str

    def __post_init__(self) -> None:
        fields: set[str] = set()
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as exc:
            raise InvalidVideoKeyTemplate(f"{self.template!r} is not a template: {exc}") from None
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in FIELDS:
                raise InvalidVideoKeyTemplate(
                    f"{self.template!r} names {{{field}}}; the fields are "
                    + ", ".join(f"{{{name}}}" for name in sorted(FIELDS))
                )
            if spec or conversion:
                raise InvalidVideoKeyTemplate(f"{self.template!r}: fields take no format or !r")
            fields.add(field)
        # Under the output prefix: the functions may write only there (their IAM policy), and
        # OutputRetentionDays expires only there.
        if not self.template.startswith("{prefix}"):
            raise InvalidVideoKeyTemplate(f"{self.template!r} must start with {{prefix}}")
        if not fields & _NAMING_FIELDS:
            raise InvalidVideoKeyTemplate(
                f"{self.template!r} must use {{stem}}, {{name}} or {{job_id}}, "
                "or every video would get the same key"
            )
        if not self.template.endswith(".mp4"):
            raise InvalidVideoKeyTemplate(f"{self.template!r} must end with .mp4")

    def key_for(
        self, *, source_key: str, input_prefix: str, output_prefix: str, job_id: str
    ) -> str | None:
        """The readable key of the upload ``source_key``'s video; None when it cannot have one
        (longer than S3 allows, or shaped like a staging key): it then stays at its staging key.
        """
        relative = source_key.removeprefix(input_prefix)
        folder, _, name = relative.rpartition("/")
        path = PurePosixPath(name)
        stem, ext = (path.stem, path.suffix[1:]) if path.suffix and path.stem else (name, "")
        key = self.template.format(
            prefix=output_prefix,
            path=f"{folder}/" if folder else "",
            stem=stem,
            name=name,
            ext=ext,
            job_id=job_id,
        )
        if len(key.encode()) > MAX_KEY_BYTES or _is_staging_shaped(key, output_prefix):
            return None
        return key


def _is_staging_shaped(key: str, output_prefix: str) -> bool:
    """Whether ``key`` could be a staging key: an upload under a folder named like a job id
    must never overwrite another job's staged video."""
    first = key.removeprefix(output_prefix).split("/", 1)[0]
    return key.startswith(output_prefix) and len(first) == 32 and bool(_HEX.fullmatch(first))


@dataclass(frozen=True)
class UploadOrder:
    """What orders two uploads: S3's sequencer, for two PUTs of the same key; otherwise the time
    the pipeline took each upload (the job's ``created_at``)."""

    source_key: str
    sequencer: str | None
    created_at: str  # ISO 8601 in UTC, as now_iso writes it: ordered as text

    def is_newer_than(self, other: UploadOrder) -> bool:
        """Ties are not newer: the video already at the key stays."""
        if (
            self.source_key == other.source_key
            and self.sequencer
            and other.sequencer
            and _HEX.fullmatch(self.sequencer)
            and _HEX.fullmatch(other.sequencer)
        ):
            # S3 documents sequencers as hex of varying length, compared once padded to one.
            width = max(len(self.sequencer), len(other.sequencer))
            mine, theirs = self.sequencer.lower().zfill(width), other.sequencer.lower().zfill(width)
            if mine != theirs:
                return mine > theirs
        return self.created_at > other.created_at
