"""Renders the stand-in video: a slow push-in and pan over the image, as H.264 MP4 via PyAV."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import av
from PIL import Image, ImageDraw

FPS = 24
FRAME_SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
LABEL = "local fal emulator - not Pika"


def render_video(
    image_bytes: bytes, *, resolution: str, duration: int, fast: bool = False
) -> bytes:
    """An MP4 of ``duration`` seconds at the resolution's 16:9 frame size (tiny when ``fast``)."""
    width, height = (160, 90) if fast else FRAME_SIZES[resolution]
    source = _cover(Image.open(io.BytesIO(image_bytes)).convert("RGB"), width, height)
    # faststart rewrites the file to put the index first, which needs a real file, not a buffer.
    with tempfile.TemporaryDirectory(prefix="fal-render-") as scratch:
        path = Path(scratch) / "output.mp4"
        _encode(source, path, width, height, duration * FPS, fast=fast)
        return path.read_bytes()


def _encode(
    source: Image.Image, path: Path, width: int, height: int, frames: int, *, fast: bool
) -> None:
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        container.metadata["title"] = LABEL
        stream = container.add_stream(
            "libx264",
            rate=FPS,
            options={"preset": "ultrafast" if fast else "veryfast", "crf": "23"},
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = _camera(source, width, height, index / max(1, frames - 1))
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Crops to 16:9 and scales to 1.25x the frame, leaving room for the camera to move."""
    target = width / height
    w, h = image.size
    if w / h > target:
        new_w = int(h * target)
        image = image.crop(((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h))
    else:
        new_h = int(w / target)
        image = image.crop((0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h))
    return image.resize((int(width * 1.25), int(height * 1.25)), Image.Resampling.BILINEAR)


def _camera(source: Image.Image, width: int, height: int, t: float) -> Image.Image:
    zoom = 1.0 + 0.2 * t
    sw, sh = source.size
    box_w, box_h = sw / zoom, sh / zoom
    left = (sw - box_w) * (0.3 + 0.4 * t)
    top = (sh - box_h) / 2
    frame = source.resize(
        (width, height), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h)
    )
    if width >= 640:
        ImageDraw.Draw(frame).text((12, height - 24), LABEL, fill=(255, 255, 255))
    return frame
