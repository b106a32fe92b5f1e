"""What kind of image an object is, from its first bytes (its name and Content-Type can lie)."""

from __future__ import annotations

# Enough bytes to recognise every format fal accepts.
SNIFF_BYTES = 16


def image_type(head: bytes) -> str | None:
    """``png``, ``jpeg`` or ``webp`` from the file signature, or None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None
