"""What kind of image an object is, judged by its first bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pika_pipeline.submit.image_check import SNIFF_BYTES, image_type


def encoded_image(image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("pil_format", "expected"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")]
)
def test_real_images_are_recognised_from_their_first_bytes(pil_format: str, expected: str) -> None:
    head = encoded_image(pil_format)[:SNIFF_BYTES]

    assert image_type(head) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "jpeg"),
        (b"\xff\xd8\xff\xe1\x00\x18Exif\x00\x00", "jpeg"),
        (b"\xff\xd8\xff\xdb", "jpeg"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "webp"),
        (b"RIFF\x00\x00\x00\x00WEBP", "webp"),
    ],
)
def test_signatures_of_the_accepted_formats(head: bytes, expected: str) -> None:
    assert image_type(head) == expected


@pytest.mark.parametrize("pil_format", ["GIF", "BMP", "TIFF", "ICO"])
def test_other_real_image_formats_are_not_accepted(pil_format: str) -> None:
    assert image_type(encoded_image(pil_format)[:SNIFF_BYTES]) is None


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x89PNG",  # truncated signature
        b"\x89PNG\r\n\x1a",
        b"\xff\xd8",
        b"RIFF\x24\x00\x00\x00WEB",
        b"RIFF\x24\x00\x00\x00AVI LIST",  # a RIFF video
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # a RIFF sound
        b"WEBP\x00\x00\x00\x00RIFF",
        b"GIF89a\x01\x00\x01\x00",
        b"\x00\x00\x00\x20ftypavif",  # AVIF
        b"\x00\x00\x00\x18ftypheic",  # HEIC
        b"%PDF-1.7\n",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"this is a text file pretending to be cat.png",
        b" \x89PNG\r\n\x1a\n",  # the signature must be at the very start
    ],
)
def test_anything_else_is_not_an_image(head: bytes) -> None:
    assert image_type(head) is None


def test_sniffing_reads_enough_bytes_for_every_accepted_format() -> None:
    assert SNIFF_BYTES >= 12
